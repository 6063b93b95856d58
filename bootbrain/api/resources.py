"""Views of the operator API. Thin: parse (spectree + pydantic), call
:mod:`bootbrain.inventory`, shape the answer. Networks, profiles and rules share one
CRUD factory; machines add next-boot and preview; tokens, events and lease events
are their own small views.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel
from spectree import Response as Resp

from bootbrain import inventory, schemas
from bootbrain.bmc import power, reinstall
from bootbrain.db import Database
from bootbrain.errors import FieldError
from bootbrain.inventory import apply as inventory_apply
from bootbrain.inventory import bmc as bmc_records
from bootbrain.inventory import funnel, leases, reinstalls
from bootbrain.machine import documents, flow
from bootbrain.models import utcnow
from bootbrain.schemas import Problem

from .common import actor, etag, if_match, may_reveal, services, spec

#: POST /reinstalls starts no sequence after this many seconds: with one sequence
#: bounded by the BMC timeouts, the answer comes well inside gunicorn's 60 s.
REINSTALLS_BUDGET_S = 25.0


def _db() -> Database:
    return services().db


def _body_json() -> Any:
    """The request body as its pydantic model (validated by spectree)."""
    return request.context.json  # type: ignore[attr-defined]


def _body_query() -> Any:
    return request.context.query  # type: ignore[attr-defined]


def _json(model: BaseModel, status: int = 200, headers: dict[str, Any] | None = None) -> Response:
    resp = Response(model.model_dump_json(), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _body_errors(*codes: int) -> dict[str, Any]:
    """Errors of a view with a JSON body: also 400 (not an object) and 415 (not JSON)."""
    return _errors(400, 415, *codes)


def _apply_out(plan: inventory_apply.Plan, applied: bool) -> schemas.ApplyOut:
    secret = inventory_apply.SECRET
    return schemas.ApplyOut(
        applied=applied and bool(plan.changes),
        changes=[
            schemas.ChangeOut(
                action=c.action,
                kind=c.kind,
                key=c.key,
                line=c.line,
                fields=[
                    schemas.FieldChangeOut(field=f.field)
                    if f.field in secret
                    else schemas.FieldChangeOut(field=f.field, old=f.old, new=f.new)
                    for f in c.fields
                ],
            )
            for c in plan.changes
        ],
        counts=plan.counts(),
        versions=plan.versions,
        diff=plan.diff(),
    )


def _errors(*codes: int) -> dict[str, Any]:
    return {f"HTTP_{c}": Problem for c in (401, 403, 422, *codes)}


@dataclass(frozen=True)
class Crud:
    """One resource's inventory functions and models, for :func:`crud`."""

    plural: str
    tag: str
    create_in: type[BaseModel]
    update_in: type[BaseModel]
    out: type[Any]
    page: type[BaseModel]
    create: Callable[..., Any]
    get: Callable[[Database, int], Any]
    list: Callable[[Database, Any], tuple[list[Any], int | None]]
    update: Callable[..., Any]
    delete: Callable[..., None]
    query: type[BaseModel] = schemas.PageQuery
    #: The resource has secret fields: ``out.of(obj, reveal=…)`` withholds them from
    #: listings and read-scope tokens.
    secrets: bool = False


def crud(bp: Routes, r: Crud) -> None:
    path, item = f"/{r.plural}", f"/{r.plural}/<int:item_id>"

    def out(obj: Any, reveal: bool) -> Any:
        return r.out.of(obj, reveal=reveal) if r.secrets else r.out.of(obj)

    @spec.validate(json=r.create_in, resp=Resp(HTTP_201=r.out, **_body_errors(409)), tags=[r.tag])
    def create() -> Response:
        obj = r.create(_db(), _body_json(), actor())
        created = out(obj, True)
        return _json(
            created,
            201,
            {**etag(created.version), "Location": f"{bp.url_prefix}/{r.plural}/{created.id}"},
        )

    @spec.validate(query=r.query, resp=Resp(HTTP_200=r.page, **_errors()), tags=[r.tag])
    def list_() -> Response:
        rows, next_after = r.list(_db(), _body_query())
        return _json(r.page(items=[out(x, False) for x in rows], next_after=next_after))

    @spec.validate(resp=Resp(HTTP_200=r.out, **_errors(404)), tags=[r.tag])
    def get(item_id: int) -> Response:
        found = out(r.get(_db(), item_id), may_reveal())
        return _json(found, 200, etag(found.version))

    @spec.validate(
        json=r.update_in, resp=Resp(HTTP_200=r.out, **_body_errors(404, 409, 412)), tags=[r.tag]
    )
    def update(item_id: int) -> Response:
        obj = r.update(_db(), item_id, _body_json(), if_match(), actor())
        changed = out(obj, True)
        return _json(changed, 200, etag(changed.version))

    @spec.validate(resp=Resp("HTTP_204", **_errors(404, 409, 412)), tags=[r.tag])
    def delete(item_id: int) -> Response:
        r.delete(_db(), item_id, if_match(), actor())
        return Response(status=204)

    singular = r.plural.rstrip("s")
    for fn, doc in (
        (create, f"Create a {singular}"),
        (list_, f"List {r.plural}"),
        (get, f"Read a {singular}"),
        (update, f"Change a {singular} (partial)"),
        (delete, f"Delete a {singular}"),
    ):
        fn.__doc__ = doc
    bp.add_url_rule(path, f"create_{singular}", create, methods=["POST"])
    bp.add_url_rule(path, f"list_{r.plural}", list_, methods=["GET"])
    bp.add_url_rule(item, f"get_{singular}", get, methods=["GET"])
    bp.add_url_rule(item, f"update_{singular}", update, methods=["PATCH"])
    bp.add_url_rule(item, f"delete_{singular}", delete, methods=["DELETE"])


class Routes:
    """The API's routes, built (and spectree-decorated, which is slow) once per process
    and added to each app's blueprint by :func:`register`."""

    url_prefix = "/api/v1"

    def __init__(self) -> None:
        self.rules: list[tuple[str, str, Callable[..., Any], list[str]]] = []

    def add_url_rule(
        self, rule: str, endpoint: str, view: Callable[..., Any], methods: list[str]
    ) -> None:
        self.rules.append((rule, endpoint, view, methods))

    def _route(self, rule: str, method: str) -> Callable[[Callable[..., Any]], Any]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            self.add_url_rule(rule, view.__name__, view, [method])
            return view

        return decorate

    def get(self, rule: str) -> Callable[[Callable[..., Any]], Any]:
        return self._route(rule, "GET")

    def post(self, rule: str) -> Callable[[Callable[..., Any]], Any]:
        return self._route(rule, "POST")

    def put(self, rule: str) -> Callable[[Callable[..., Any]], Any]:
        return self._route(rule, "PUT")

    def delete(self, rule: str) -> Callable[[Callable[..., Any]], Any]:
        return self._route(rule, "DELETE")


def register(bp: Blueprint) -> None:
    for rule, endpoint, view, methods in _routes().rules:
        bp.add_url_rule(rule, endpoint, view, methods=methods)


@functools.cache
def _routes() -> Routes:
    bp = Routes()
    crud(
        bp,
        Crud(
            "machines",
            "machines",
            schemas.MachineCreate,
            schemas.MachineUpdate,
            schemas.MachineOut,
            schemas.MachinePage,
            inventory.create_machine,
            inventory.get_machine,
            inventory.list_machines,
            inventory.update_machine,
            inventory.delete_machine,
            query=schemas.MachineQuery,
            secrets=True,
        ),
    )
    crud(
        bp,
        Crud(
            "networks",
            "networks",
            schemas.NetworkIn,
            schemas.NetworkUpdate,
            schemas.NetworkOut,
            schemas.NetworkPage,
            inventory.create_network,
            inventory.get_network,
            inventory.list_networks,
            inventory.update_network,
            inventory.delete_network,
        ),
    )
    crud(
        bp,
        Crud(
            "profiles",
            "profiles",
            schemas.ProfileIn,
            schemas.ProfileUpdate,
            schemas.ProfileOut,
            schemas.ProfilePage,
            inventory.create_profile,
            inventory.get_profile,
            inventory.list_profiles,
            inventory.update_profile,
            inventory.delete_profile,
            secrets=True,
        ),
    )
    crud(
        bp,
        Crud(
            "rules",
            "rules",
            schemas.RuleIn,
            schemas.RuleUpdate,
            schemas.RuleOut,
            schemas.RulePage,
            inventory.create_rule,
            inventory.get_rule,
            inventory.list_rules,
            inventory.update_rule,
            inventory.delete_rule,
        ),
    )

    @bp.put("/machines/<int:item_id>/next-boot")
    @spec.validate(
        json=schemas.NextBootIn,
        resp=Resp(HTTP_200=schemas.MachineOut, **_body_errors(404)),
        tags=["machines"],
    )
    def put_next_boot(item_id: int) -> Response:
        """Set the machine's one-shot next boot"""
        m = inventory.set_next_boot(
            _db(),
            item_id,
            _body_json(),
            services().settings.next_boot_default_ttl,
            actor(),
        )
        out = schemas.MachineOut.of(inventory.get_machine(_db(), m.id), reveal=True)
        return _json(out, 200, etag(out.version))

    @bp.delete("/machines/<int:item_id>/next-boot")
    @spec.validate(resp=Resp("HTTP_204", **_errors(404)), tags=["machines"])
    def delete_next_boot(item_id: int) -> Response:
        """Cancel the machine's one-shot next boot"""
        inventory.cancel_next_boot(_db(), item_id, actor())
        return Response(status=204)

    @bp.get("/machines/<int:item_id>/boot-preview")
    @spec.validate(
        query=schemas.PreviewQuery,
        resp=Resp(HTTP_200=schemas.PreviewOut, **_errors(404)),
        tags=["machines"],
    )
    def boot_preview(item_id: int) -> Response:
        """What the machine would boot now, and why (records nothing)"""
        q: schemas.PreviewQuery = _body_query()
        settings = services().settings
        base = flow.base_url(settings, request.host_url)
        return _json(flow.preview_machine(_db(), settings, item_id, q.buildarch, q.platform, base))

    @bp.get("/machines/<int:item_id>/config-preview")
    @spec.validate(
        query=schemas.ConfigPreviewQuery,
        resp=Resp(HTTP_200=schemas.ConfigPreviewOut, **_errors(404)),
        tags=["machines"],
    )
    def config_preview(item_id: int) -> Response:
        """The booted OS's documents as a boot would be served them now (records nothing)"""
        q: schemas.ConfigPreviewQuery = _body_query()
        settings = services().settings
        return _json(
            documents.preview(
                _db(),
                settings,
                item_id,
                q.profile,
                flow.base_url(settings, request.host_url),
                may_reveal(),
            )
        )

    @bp.get("/machines/<int:item_id>/boots")
    @spec.validate(
        query=schemas.BootsQuery,
        resp=Resp(HTTP_200=schemas.BootAttemptPage, **_errors(404)),
        tags=["machines"],
    )
    def machine_boots(item_id: int) -> Response:
        """The machine's last boot attempts, newest first, each stage with its time"""
        q: schemas.BootsQuery = _body_query()
        items = funnel.machine_boots(_db(), services().settings, item_id, q.limit, utcnow())
        return _json(schemas.BootAttemptPage(items=items))

    @bp.get("/boots")
    @spec.validate(
        query=schemas.StuckQuery,
        resp=Resp(HTTP_200=schemas.BootAttemptPage, **_errors()),
        tags=["machines"],
    )
    def list_boots() -> Response:
        """Boot attempts that are stuck (started, not completed, no new stage within
        their profile's stuck_after), with the last stage each reached"""
        q: schemas.StuckQuery = _body_query()
        if not q.stuck:
            raise FieldError("stuck", "only stuck=true is supported; see /machines/{id}/boots")
        items = funnel.stuck_boots(_db(), services().settings, q.limit, utcnow())
        return _json(schemas.BootAttemptPage(items=items))

    @bp.put("/machines/<int:item_id>/bmc")
    @spec.validate(
        json=schemas.BmcIn,
        resp=Resp(HTTP_200=schemas.BmcOut, **_body_errors(404)),
        tags=["machines"],
    )
    def put_bmc(item_id: int) -> Response:
        """Set the machine's BMC (the password is write-only)"""
        settings = services().settings
        return _json(bmc_records.set_bmc(_db(), settings.secret(), item_id, _body_json(), actor()))

    @bp.get("/machines/<int:item_id>/bmc")
    @spec.validate(resp=Resp(HTTP_200=schemas.BmcOut, **_errors(404)), tags=["machines"])
    def get_bmc(item_id: int) -> Response:
        """Read the machine's BMC (never its password)"""
        return _json(bmc_records.get_bmc(_db(), item_id))

    @bp.get("/machines/<int:item_id>/power")
    @spec.validate(resp=Resp(HTTP_200=schemas.PowerOut, **_errors(404, 502)), tags=["machines"])
    def get_power(item_id: int) -> Response:
        """The machine's power state, asked of its BMC"""
        return _json(power.status(_db(), services().settings.secret(), item_id))

    @bp.post("/machines/<int:item_id>/power")
    @spec.validate(
        json=schemas.PowerIn,
        resp=Resp(HTTP_200=schemas.PowerOut, **_body_errors(404, 502)),
        tags=["machines"],
    )
    def post_power(item_id: int) -> Response:
        """Power the machine on, off, cycle it (on if off), or make its next boot a network boot"""
        body: schemas.PowerIn = _body_json()
        return _json(
            power.act(_db(), services().settings.secret(), item_id, body.action, actor())
        )

    @bp.post("/machines/<int:item_id>/reinstall")
    @spec.validate(
        json=schemas.ReinstallIn,
        resp=Resp(HTTP_200=schemas.ReinstallOut, **_body_errors(404, 409, 502, 504)),
        tags=["machines"],
    )
    def post_reinstall(item_id: int) -> Response:
        """Reinstall now: one-shot next boot, network boot once on the BMC, power-cycle"""
        settings = services().settings
        return _json(
            reinstall.reinstall(
                _db(), settings.secret(), item_id, _body_json(),
                settings.next_boot_default_ttl, actor(),
            )
        )

    @bp.post("/reinstalls")
    @spec.validate(
        json=schemas.ReinstallsIn,
        resp=Resp(HTTP_200=schemas.ReinstallsOut, **_body_errors()),
        tags=["machines"],
    )
    def post_reinstalls() -> Response:
        """Reinstall many machines (hostnames, tag or rule), at most `concurrency` at a
        time, none started after `max_failures` failures or after the request's time
        budget (those are `skipped`: send them again); each step is an event"""
        body: schemas.ReinstallsIn = _body_json()
        settings = services().settings
        chosen = reinstalls.select_machines(_db(), body.hostnames, body.tag, body.rule)
        return _json(
            reinstall.reinstall_many(
                _db(), settings.secret(), chosen, body, settings.next_boot_default_ttl,
                actor(), body.concurrency, body.max_failures, budget_s=REINSTALLS_BUDGET_S,
            )
        )

    @bp.post("/tokens")
    @spec.validate(
        json=schemas.TokenIn,
        resp=Resp(HTTP_201=schemas.TokenCreated, **_body_errors(409)),
        tags=["tokens"],
    )
    def create_token() -> Response:
        """Create an API token (shown once)"""
        t, token = inventory.create_token(
            _db(), services().settings.secret(), _body_json(), actor()
        )
        out = schemas.TokenCreated(**schemas.TokenOut.of(t).model_dump(), token=token)
        return _json(out, 201)

    @bp.get("/tokens")
    @spec.validate(
        query=schemas.PageQuery, resp=Resp(HTTP_200=schemas.TokenPage, **_errors()), tags=["tokens"]
    )
    def list_tokens() -> Response:
        """List API tokens (never their secrets)"""
        rows, nxt = inventory.list_tokens(_db(), _body_query())
        return _json(
            schemas.TokenPage(items=[schemas.TokenOut.of(t) for t in rows], next_after=nxt)
        )

    @bp.delete("/tokens/<int:item_id>")
    @spec.validate(resp=Resp(HTTP_200=schemas.TokenOut, **_errors(404)), tags=["tokens"])
    def revoke_token(item_id: int) -> Response:
        """Revoke an API token"""
        return _json(schemas.TokenOut.of(inventory.revoke_token(_db(), item_id, actor())))

    @bp.get("/events")
    @spec.validate(
        query=schemas.EventQuery,
        resp=Resp(HTTP_200=schemas.EventPage, **_errors()),
        tags=["events"],
    )
    def list_events() -> Response:
        """List events (boots, decisions, leases, changes), oldest first"""
        rows, nxt = inventory.list_events(_db(), _body_query())
        return _json(
            schemas.EventPage(items=[schemas.EventOut.of(e) for e in rows], next_after=nxt)
        )

    @bp.post("/apply")
    @spec.validate(
        json=schemas.ApplyIn,
        resp=Resp(HTTP_200=schemas.ApplyOut, **_body_errors(409)),
        tags=["inventory"],
    )
    def apply_document() -> Response:
        """Apply a desired-state document (the YAML of export): plan, and unless a dry
        run, carry the plan out in one transaction"""
        body: schemas.ApplyIn = _body_json()
        if body.dry_run:
            plan = inventory_apply.plan(_db(), body.document, body.prune)
        else:
            plan = inventory_apply.apply(_db(), body.document, actor(), body.prune, body.versions)
        return _json(_apply_out(plan, applied=not body.dry_run))

    @bp.post("/lease-events")
    @spec.validate(
        json=schemas.LeaseEventIn,
        resp=Resp(HTTP_202=schemas.Accepted, **_body_errors()),
        tags=["dhcp"],
    )
    def lease_event() -> Response:
        """Record a DHCP lease event from the dnsmasq or Kea hook"""
        result = leases.record(_db(), services().settings, _body_json())
        return _json(result, 202)

    return bp
