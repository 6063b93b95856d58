"""Reinstall now: one machine's sequence (one-shot next boot → network-boot-once on the
BMC → power-cycle, each step an event) and the rolling engine that runs it on many
machines, at most K at a time, starting none after N failures.

A BMC failure withdraws the one-shot next boot this reinstall set: the machine was not
rebooted into it by us, and a next boot left pending would turn the machine's next
unrelated reboot (a power cut, a kernel panic) into a reinstall nobody is watching.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal, get_args

from bootbrain import schemas
from bootbrain.db import Database
from bootbrain.errors import (
    BmcError,
    BootbrainError,
    ConflictError,
    NoBmcError,
    ReinstallFailedError,
)
from bootbrain.inventory import bmc as records
from bootbrain.inventory import machines as machine_records
from bootbrain.inventory import reinstalls as store
from bootbrain.models import utcnow

from . import driver_for
from .power import target_of


@dataclass
class _Run:
    db: Database
    machine_id: int
    machine: str
    bmc: str
    actor: str
    out: schemas.ReinstallOut

    def step(self, step: str, detail: str, kind: str = "reinstall") -> None:
        """One step, in the answer and as an event (never a credential: the driver's
        messages name the machine and the BMC only)."""
        self.out.steps.append(schemas.ReinstallStepOut(step=step, at=utcnow(), detail=detail))
        records.record_event(
            self.db, kind, f"reinstall of {self.machine}: {step}: {detail}", self.machine_id,
            step=step, bmc=self.bmc, actor=self.actor,
        )


def reinstall(
    db: Database,
    secret: bytes,
    machine_id: int,
    req: schemas.ReinstallIn,
    default_ttl: int,
    actor: str,
) -> schemas.ReinstallOut:
    """Reinstall one machine now. Raises ConflictError (no BMC record), FieldError (no
    such profile; nothing done) or ReinstallFailedError (a BMC step failed; the
    one-shot next boot withdrawn)."""
    try:
        target = target_of(db, secret, machine_id)
    except NoBmcError:
        raise ConflictError(
            "bmc", f"machine #{machine_id} has no BMC record: set one first (machine bmc set)"
        ) from None
    out = schemas.ReinstallOut(
        machine_id=machine_id, hostname=None, status="failed", bmc=target.label
    )
    run = _Run(db, machine_id, target.machine, target.label, actor, out)
    if not target.machine.startswith("#"):
        out.hostname = target.machine
    machine_records.set_next_boot(db, machine_id, req.next_boot(), default_ttl, actor)
    ref = store.next_boot_ref(db, machine_id)
    run.step("next-boot", f"one-shot next boot set to {req.profile}")
    driver = driver_for(target)
    step = "power-state"
    try:
        state = driver.power_state()
        store.observe(db, machine_id, power=state)
        run.step(step, f"power is {state}")
        step = "boot-once"
        got = driver.network_boot_once()
        out.boot_confirmed = got.confirmed
        run.step(
            step,
            f"network boot once set, the BMC reads back {got.device}"
            + ("" if got.confirmed else " (it cannot confirm a one-time override)"),
        )
        if state == "off" and not req.power_on:
            out.status, out.power = "left-off", "off"
            out.detail = "the machine is off and power_on is false: it reinstalls when powered on"
            run.step("left-off", out.detail)
            return out
        step = "power-on" if state == "off" else "power-cycle"
        if state == "off":
            out.power = driver.on()
        else:
            driver.reset()
            out.power = "on"
        store.observe(db, machine_id, power=out.power)
        run.step(step, "powered on" if state == "off" else "hard reset (it was on)")
    except BmcError as e:
        if ref is not None and store.withdraw_next_boot(
            db, machine_id, ref, actor, f"the BMC failed at {step}"
        ):
            after = f"the one-shot next boot to {req.profile} withdrawn"
        else:
            after = "the next boot had changed since: left as it is"
        failed = ReinstallFailedError(e, step, after)
        store.observe(db, machine_id, error=failed.message)
        run.step("failed", failed.message, kind="reinstall.error")
        raise failed from None
    out.status = "done"
    out.detail = f"rebooting into {req.profile}"
    run.step("done", out.detail)
    return out


Status = Literal["done", "left-off", "failed", "skipped"]


def _named(machine_id: int, name: str, status: Status, detail: str) -> schemas.ReinstallOut:
    hostname = None if name.startswith("#") else name
    return schemas.ReinstallOut(
        machine_id=machine_id, hostname=hostname, status=status, detail=detail
    )


def reinstall_many(
    db: Database,
    secret: bytes,
    machines: Sequence[tuple[int, str]],
    req: schemas.ReinstallIn,
    default_ttl: int,
    actor: str,
    concurrency: int,
    max_failures: int,
    budget_s: float | None = None,
    on_done: Callable[[schemas.ReinstallOut], None] | None = None,
) -> schemas.ReinstallsOut:
    """Run :func:`reinstall` on ``machines``, at most ``concurrency`` at a time; the
    next starts when one finishes or fails. After ``max_failures`` failures, or once
    ``budget_s`` seconds have passed, no more start: the rest are ``skipped``.
    Results are in the order of ``machines``."""

    def one(mid: int, name: str) -> schemas.ReinstallOut:
        try:
            return reinstall(db, secret, mid, req, default_ttl, actor)
        except BootbrainError as e:  # this machine's failure, not the run's
            out = _named(mid, name, "failed", str(e))
            out.bmc = getattr(e, "bmc", None)
            return out

    store.check_profile(db, req.profile)
    started = time.monotonic()
    results: dict[int, schemas.ReinstallOut] = {}
    failures = 0
    stopped: str | None = None
    queue = list(enumerate(machines))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="reinstall") as pool:
        running: dict[Future[schemas.ReinstallOut], int] = {}
        while queue or running:
            if stopped is None and failures >= max_failures:
                stopped = f"stopped after {failures} failure(s) (max_failures {max_failures})"
            if stopped is None and budget_s is not None and time.monotonic() - started > budget_s:
                stopped = f"time budget of {budget_s:.0f} s spent: not started"
            while queue and stopped is None and len(running) < concurrency:
                i, (mid, name) = queue.pop(0)
                running[pool.submit(one, mid, name)] = i
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                i = running.pop(f)
                got = f.result()
                failures += got.status == "failed"
                results[i] = got
                if on_done is not None:
                    on_done(got)
    for i, (mid, name) in queue:
        got = _named(mid, name, "skipped", stopped or "not started")
        results[i] = got
        if on_done is not None:
            on_done(got)
    items = [results[i] for i in range(len(machines))]
    counts = {k: sum(r.status == k for r in items) for k in get_args(Status)}
    return schemas.ReinstallsOut(counts=counts, stopped=stopped, items=items)
