"""Configuration documents for the booted OS: cloud-init's NoCloud files and a JSON document.

Pure: built from a :class:`~bootbrain.boot.types.ConfigSource` (the machine, its
configuration, the boot's profile and its configuration) — no database, no Flask.
Served by the machine routes under ``/boot/<token>/`` against the per-boot token only.

How a profile's and a machine's configuration merge (the machine wins)
----------------------------------------------------------------------
The profile is the one this boot booted (a one-shot action's, the assigned one, a
rule's or the default), read when the document is fetched. The groups that apply to
the machine (:mod:`bootbrain.boot.groups`) come between the two, least specific
first, each merged like a machine over what came before; template variables
(``vars``): the later one wins.

``ssh_keys``
    Union: the profile's keys, then the machine's; a key already listed (same type
    and key material, whatever the comment) is not repeated.
``tags``
    Union of the machine's and the profile's tags, sorted.
``metadata``
    The machine's object applied to the profile's as a JSON merge patch (RFC 7396):
    objects merge key by key, recursively; any other value (string, number, list)
    from the machine replaces the profile's; a machine value of ``null`` removes the
    profile's key.
``user_data``, ``vendor_data``
    The machine's when it has one — an empty string too, which means "none, not the
    profile's" — else the profile's, else empty. Never concatenated.

Documents
---------
``meta-data`` (YAML)
    ``instance-id`` (``bootbrain-machine-<id>``: stable across boots, so cloud-init
    runs its once-per-instance modules once per machine; ``bootbrain-boot-<boot id>``
    for a boot of a machine not in the inventory), ``local-hostname`` (the FQDN when
    the network has a domain) and ``public-keys`` (the merged SSH keys, which
    cloud-init installs for the default user).
``user-data``, ``vendor-data``
    The merged template rendered in the same Jinja sandbox as every operator template
    (strict undefined); variables in :func:`document_variables`.
``network-config`` (cloud-init network config version 2)
    From the static assignment through :func:`bootbrain.boot.variables.static_values`,
    the function that also gives ``IPXE_BOOT_LINUX_IP_CONFIG``: one ethernet named
    like the assignment's interface (default ``eth0``), matched by the MAC of that NIC
    (the NIC of that name, else the boot NIC) and renamed to it with ``set-name``, with
    the address/prefix, a default route via the gateway and the DNS servers and
    search domain. Without a static assignment: DHCPv4 on that NIC. The VLAN id of a
    network is not configured (the boot NIC is an access port, as for ``ip=``).
``metadata.json``
    The same facts for OSes without cloud-init: instance id, boot id, machine id,
    hostname, FQDN, profile, SSH keys, tags, metadata, network (with ``ip_config``)
    and the URLs of the other documents and of the completion callback.
``ignition.json``
    The profile's Ignition config (Flatcar, Fedora CoreOS), rendered with the same
    variables as user-data and checked by :mod:`bootbrain.boot.ignition`. A machine
    has none of its own: it takes its profile's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from bootbrain.errors import DocumentError, TemplateProblem
from bootbrain.vocabulary import CONTROL_BUT_TAB_RE

from . import ignition
from .sandbox import check_template_text, render_text
from .types import ConfigSource, MachineView, OsConfig, RenderContext
from .validate import sample_variables
from .variables import template_variables

#: Most characters in one user-data or vendor-data template.
MAX_DOCUMENT: Final = 65536
#: Most bytes of one metadata object, serialised as JSON.
MAX_METADATA_BYTES: Final = 16384
MAX_METADATA_DEPTH: Final = 8
MAX_SSH_KEY: Final = 8192
MAX_SSH_KEYS: Final = 64
MIN_RSA_BITS: Final = 2048

NOCLOUD_FILES: Final = ("meta-data", "user-data", "vendor-data", "network-config")
JSON_DOCUMENT: Final = "metadata.json"

#: Key type → how many length-prefixed fields its public blob holds (RFC 4253,
#: 5656, 8709; PROTOCOL.u2f for the FIDO ``sk-`` types).
SSH_KEY_TYPES: Final = {
    "ssh-ed25519": 2,
    "ssh-rsa": 3,
    "ecdsa-sha2-nistp256": 3,
    "ecdsa-sha2-nistp384": 3,
    "ecdsa-sha2-nistp521": 3,
    "sk-ssh-ed25519@openssh.com": 3,
    "sk-ecdsa-sha2-nistp256@openssh.com": 4,
}

#: First-line markers cloud-init acts on (``cloudinit/handlers``), longest first as
#: cloud-init matches them. Anything else is refused when saved.
USER_DATA_STARTS: Final = (
    "#cloud-config-archive",
    "## template: jinja",
    "#cloud-config-jsonp",
    "#cloud-boothook",
    "#include-once",
    "#cloud-config",
    "#part-handler",
    "content-type:",
    "#include",
    "#!",
)


# --- values, checked when written ------------------------------------------------------


def canonical_ssh_key(value: str) -> str:
    """``<type> <base64> [comment]`` with single spaces; raises ValueError.

    One key per entry, no ``authorized_keys`` options, a known type whose blob parses
    and names the same type, RSA of at least :data:`MIN_RSA_BITS` bits.
    """
    if CONTROL_BUT_TAB_RE.search(value):
        raise ValueError("one key per entry: no newlines or control characters")
    if len(value) > MAX_SSH_KEY:
        raise ValueError(f"longer than {MAX_SSH_KEY} characters")
    parts = value.split()
    if len(parts) < 2:
        raise ValueError("expected '<type> <base64 key> [comment]'")
    kind, blob_text = parts[0], parts[1]
    if kind not in SSH_KEY_TYPES:
        if kind == "ssh-dss":
            raise ValueError("DSA keys are not accepted (current OpenSSH refuses them)")
        if any(c in kind for c in '=,"'):
            raise ValueError("authorized_keys options are not accepted: give the key alone")
        raise ValueError(f"unknown key type; accepted: {', '.join(SSH_KEY_TYPES)}")
    try:
        blob = base64.b64decode(blob_text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None
    fields = _ssh_fields(blob)
    if fields is None or len(fields) != SSH_KEY_TYPES[kind] or fields[0] != kind.encode():
        raise ValueError(f"the key material is not a {kind} public key")
    if kind.startswith("ecdsa-sha2-") and fields[1] != kind.removeprefix("ecdsa-sha2-").encode():
        raise ValueError("the key's curve does not match its type")
    if kind == "ssh-rsa" and int.from_bytes(fields[2], "big").bit_length() < MIN_RSA_BITS:
        raise ValueError(f"RSA keys shorter than {MIN_RSA_BITS} bits are not accepted")
    if kind in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com") and len(fields[1]) != 32:
        raise ValueError("an Ed25519 key is 32 bytes")
    comment = " ".join(parts[2:])
    return f"{kind} {blob_text}" + (f" {comment}" if comment else "")


def _ssh_fields(blob: bytes) -> list[bytes] | None:
    fields: list[bytes] = []
    pos = 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            return None
        size = int.from_bytes(blob[pos : pos + 4], "big")
        pos += 4
        if pos + size > len(blob):
            return None
        fields.append(blob[pos : pos + size])
        pos += size
    return fields


def key_material(key: str) -> str:
    """What makes two keys the same key: type and blob, whatever the comment."""
    return " ".join(key.split()[:2])


def check_metadata(value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object of bounded size and depth, without NUL; raises ValueError."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"must be plain JSON: {e}") from None
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise ValueError(f"larger than {MAX_METADATA_BYTES} bytes as JSON")
    if "\\u0000" in text or "\x00" in text:
        raise ValueError("contains a NUL character")
    if _depth(value) > MAX_METADATA_DEPTH:
        raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _depth(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def check_document_text(value: str) -> str:
    """The text of a user-data/vendor-data template; raises ValueError."""
    return check_template_text(value, MAX_DOCUMENT)


# --- merging -------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch of ``patch`` onto ``target`` (neither is modified)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge(
    profile: OsConfig | None, machine: OsConfig | None, groups: Sequence[OsConfig] = ()
) -> OsConfig:
    """The configuration the booted OS gets (rules in this module's docstring): the
    profile's, then each group's in the order given (least specific first,
    :mod:`bootbrain.boot.groups`), then the machine's."""
    p = profile or OsConfig()
    m = machine or OsConfig()
    layers = (p, *groups, m)
    keys: list[str] = []
    seen: set[str] = set()
    for key in (k for layer in layers for k in layer.ssh_keys):
        material = key_material(key)
        if material not in seen:
            seen.add(material)
            keys.append(key)
    metadata: Any = p.metadata
    variables: dict[str, str] = {}
    for layer in layers:
        if layer is not p:
            metadata = merge_patch(metadata, layer.metadata)
        variables.update(layer.variables)
    return OsConfig(
        ssh_keys=tuple(keys),
        tags=tuple(sorted({t for layer in layers for t in layer.tags})),
        metadata=metadata,
        user_data=m.user_data if m.user_data is not None else p.user_data,
        vendor_data=m.vendor_data if m.vendor_data is not None else p.vendor_data,
        ignition=m.ignition if m.ignition is not None else p.ignition,
        variables=variables,
    )


def _origin(source: ConfigSource, name: str) -> str:
    mc = source.machine_config
    return name if mc is not None and getattr(mc, name) is not None else f"profile.{name}"


# --- rendering ------------------------------------------------------------------------------


def instance_id(machine_id: int | None, boot_id: str) -> str:
    return (
        f"bootbrain-machine-{machine_id}" if machine_id is not None else f"bootbrain-boot-{boot_id}"
    )


def _fqdn(hostname: str, domain: str) -> str:
    return f"{hostname}.{domain}" if hostname and domain else hostname


def document_variables(
    machine: MachineView | None,
    config: OsConfig,
    profile: str | None,
    boot_id: str,
    ctx: RenderContext,
) -> dict[str, Any]:
    """Variables of user-data and vendor-data templates.

    Those of every operator template (:func:`bootbrain.boot.variables.template_variables`:
    ``hostname``, ``ip``, ``prefix``, ``gateway``, ``dns``, ``domain``, ``ip_config``,
    ``machine``, ``base_url``, ``boot_id``, ``done_url``, ``metadata_url`` …), and
    ``ssh_keys`` (tuple), ``tags`` (tuple), ``metadata`` (the merged object),
    ``profile`` (the boot's profile name or ``""``), ``instance_id`` and ``fqdn``.
    """
    return _config_variables(
        template_variables(machine, ctx, config.variables),
        config,
        profile or "",
        machine.id if machine else None,
        boot_id,
    )


def _config_variables(
    base: Mapping[str, Any],
    config: OsConfig,
    profile: str,
    machine_id: int | None,
    boot_id: str,
) -> dict[str, Any]:
    return {
        **base,
        "ssh_keys": tuple(config.ssh_keys),
        "tags": tuple(config.tags),
        "metadata": dict(config.metadata),
        "profile": profile,
        "instance_id": instance_id(machine_id, boot_id),
        "fqdn": _fqdn(base["hostname"], base["domain"]),
    }


def check_document(field: str, text: str) -> None:
    """Refuse a rendered user-data/vendor-data cloud-init would not read as intended."""
    if not text.strip():
        return
    first = text.split("\n", 1)[0]
    start = next((s for s in USER_DATA_STARTS if first.lower().startswith(s)), None)
    if start is None:
        raise DocumentError(
            field,
            "must start with #cloud-config, a #! script or another cloud-init user-data "
            "marker (#cloud-boothook, #include, #cloud-config-archive, #part-handler, "
            "## template: jinja, or a MIME Content-Type header)",
            1,
        )
    if start == "#cloud-config":
        loaded = _load_yaml(field, text)
        if loaded is not None and not isinstance(loaded, dict):
            raise DocumentError(field, "a #cloud-config document must be a YAML mapping")
    elif start == "#cloud-config-archive":
        loaded = _load_yaml(field, text)
        if not isinstance(loaded, list):
            raise DocumentError(field, "a #cloud-config-archive document must be a YAML list")


def _load_yaml(field: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        where = f"line {line} of the rendered document" if line else "the rendered document"
        raise DocumentError(field, f"not valid YAML ({where}): {problem}", line) from None


def _render_document(field: str, source: str | None, variables: Mapping[str, Any]) -> str:
    if not source:
        return ""
    try:
        text = render_text(field, source, variables)
    except TemplateProblem as e:
        raise DocumentError(field, e.message, e.line) from None
    check_document(field, text)
    return text


def validate_config(config: OsConfig, context: OsConfig | None = None) -> None:
    """Check templates when a machine or profile is saved: the templates ``config``
    gets merged over ``context`` (a machine's assigned profile; None for a profile) are
    compiled in the sandbox, rendered once with the sample machine's values and the
    merged keys, tags and metadata, and format-checked (``#cloud-config`` must be a
    YAML mapping). So a machine whose metadata removes a key its profile's user-data
    uses is refused too. Raises :class:`DocumentError` naming field and line."""
    merged = merge(context, config)
    variables = _config_variables(sample_variables(), merged, "sample", 1, "sample")
    for name in ("user_data", "vendor_data"):
        source = getattr(merged, name)
        if source:
            field = (
                name if context is None or getattr(config, name) is not None else f"profile.{name}"
            )
            try:
                check_document_text(source)
            except ValueError as e:
                raise DocumentError(field, str(e)) from None
            try:
                _render_document(field, source, variables)
            except DocumentError as e:
                if field == name:
                    raise
                message = f"the profile's template fails with this machine's values: {e.message}"
                raise DocumentError(field, message, e.line) from None
    if merged.ignition:
        _validate_ignition(merged.ignition, variables, own=context is None)


def _validate_ignition(source: str, variables: Mapping[str, Any], own: bool) -> None:
    """``own``: a profile's config; else the profile's, checked with a machine's values."""
    field = "ignition" if own else "profile.ignition"
    try:
        ignition.check_ignition_text(source)
    except ValueError as e:
        raise DocumentError(field, str(e)) from None
    try:
        ignition.render_ignition(field, source, variables)
    except DocumentError as e:
        if own:
            raise
        message = f"the profile's Ignition config fails with this machine's values: {e.message}"
        raise DocumentError(field, message, e.line) from None


def _yaml(data: Any) -> str:
    # No line folding: one SSH key, one line (valid either way, but greppable).
    return yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 20
    )


def network_view(source: ConfigSource, v: Mapping[str, Any]) -> dict[str, Any]:
    """The network part of the JSON document (and the input of network-config), from
    the boot's template variables ``v``: the static values are computed once."""
    machine = source.machine
    if machine is not None and machine.static is not None:
        return {
            "interface": v["interface"],
            "mac": source.mac,
            "dhcp": False,
            "address": v["ip"],
            "prefix": int(v["prefix"]),
            "netmask": v["netmask"],
            "gateway": v["gateway"] or None,
            "dns": [d for d in (v["dns"], v["dns2"]) if d],
            "domain": v["domain"] or None,
            "ip_config": v["ip_config"],
        }
    return {"interface": source.interface, "mac": source.mac, "dhcp": True}


def network_config(net: Mapping[str, Any]) -> dict[str, Any]:
    """cloud-init network config version 2 for :func:`network_view`'s answer."""
    ethernet: dict[str, Any] = {}
    if net.get("mac"):
        ethernet["match"] = {"macaddress": net["mac"]}
        ethernet["set-name"] = net["interface"]
    if net["dhcp"]:
        ethernet["dhcp4"] = True
    else:
        ethernet["addresses"] = [f"{net['address']}/{net['prefix']}"]
        if net["gateway"]:
            ethernet["routes"] = [{"to": "0.0.0.0/0", "via": net["gateway"]}]
        nameservers: dict[str, Any] = {}
        if net["dns"]:
            nameservers["addresses"] = list(net["dns"])
        if net["domain"]:
            nameservers["search"] = [net["domain"]]
        if nameservers:
            ethernet["nameservers"] = nameservers
    return {"version": 2, "ethernets": {net["interface"]: ethernet}}


@dataclass(frozen=True)
class Prepared:
    """One boot's merged configuration and template variables, ready to render."""

    source: ConfigSource
    config: OsConfig
    variables: Mapping[str, Any]
    network: Mapping[str, Any]
    boot_id: str
    ctx: RenderContext

    @property
    def instance_id(self) -> str:
        return str(self.variables["instance_id"])


def prepare(source: ConfigSource, boot_id: str, ctx: RenderContext) -> Prepared:
    """Merge and collect variables (raises RenderError for an unusable static assignment)."""
    groups = [g.config for g in source.groups]
    config = merge(source.profile_config, source.machine_config, groups)
    variables = document_variables(source.machine, config, source.profile_name, boot_id, ctx)
    return Prepared(source, config, variables, network_view(source, variables), boot_id, ctx)


def meta_data(p: Prepared) -> str:
    meta: dict[str, Any] = {"instance-id": p.instance_id}
    if p.variables["hostname"]:
        meta["local-hostname"] = p.variables["fqdn"]
    if p.config.ssh_keys:
        meta["public-keys"] = list(p.config.ssh_keys)
    return _yaml(meta)


def user_data(p: Prepared) -> str:
    """Raises :class:`DocumentError` when the template fails for this machine."""
    field = _origin(p.source, "user_data")
    return _render_document(field, p.config.user_data, p.variables)


def vendor_data(p: Prepared) -> str:
    """Raises :class:`DocumentError` when the template fails for this machine."""
    field = _origin(p.source, "vendor_data")
    return _render_document(field, p.config.vendor_data, p.variables)


def network_config_text(p: Prepared) -> str:
    return _yaml(network_config(p.network))


def metadata_document(p: Prepared) -> dict[str, Any]:
    """The JSON document (``metadata.json``)."""
    machine = p.source.machine
    base = (p.ctx.metadata_url or "").rstrip("/")
    return {
        "instance_id": p.instance_id,
        "boot_id": p.boot_id,
        "machine_id": machine.id if machine else None,
        "hostname": p.variables["hostname"] or None,
        "fqdn": p.variables["fqdn"] or None,
        "profile": p.source.profile_name,
        "ssh_keys": list(p.config.ssh_keys),
        "tags": list(p.config.tags),
        "metadata": dict(p.config.metadata),
        "network": dict(p.network),
        "urls": {
            **{name: f"{base}/{name}" for name in NOCLOUD_FILES},
            "done": p.ctx.done_url,
        },
    }


def render_file(p: Prepared, name: str) -> str:
    """One NoCloud file by its name (:data:`NOCLOUD_FILES`), or ``ignition.json``."""
    if name == "meta-data":
        return meta_data(p)
    if name == "user-data":
        return user_data(p)
    if name == "vendor-data":
        return vendor_data(p)
    if name == "network-config":
        return network_config_text(p)
    if name == ignition.IGNITION_DOCUMENT:
        return ignition_config(p)
    raise KeyError(name)


def ignition_config(p: Prepared) -> str:
    """Raises :class:`~bootbrain.boot.ignition.MissingIgnitionError` when the boot's
    profile has none, :class:`DocumentError` when it fails for this machine."""
    return ignition.render_ignition("profile.ignition", p.config.ignition, p.variables)
