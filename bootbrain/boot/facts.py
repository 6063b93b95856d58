"""Parse what iPXE sent to ``/ipxe`` into canonical :class:`Facts`.

The query comes from the bootstrap script (:func:`bootbrain.boot.render.render_bootstrap`)::

    uuid=${uuid}&mac=${netX/mac:hexhyp}&serial=${serial:hexraw}
    &board-serial=${board-serial:hexraw}&manufacturer=${manufacturer:hexraw}
    &product=${product:hexraw}&asset=${asset:hexraw}&buildarch=${buildarch}
    &platform=${platform}

Rules (BRIEF "Query-string traps"):

* The raw query is split on ``&`` and ``=`` and percent-decoded only: ``+`` stays a
  plus (this iPXE does not escape it, so ``+``→space would mangle values).
* ``serial``, ``board-serial``, ``manufacturer``, ``product`` and ``asset`` must be
  hex (``:hexraw``: the exact bytes, never expanded by iPXE). A value that is not hex
  is dropped with a problem, not guessed at: ``ABCD`` is valid hex *and* a plausible
  serial, so accepting "plain if not hex" would make the same serial mean two
  things. The bytes are decoded as UTF-8; bytes that are not UTF-8 are kept as
  ``\\xNN`` escapes (deterministic, so the same firmware string always maps to the
  same value and identity still works) and recorded as a problem. A value with
  control characters (NUL included) is dropped: SMBIOS strings cannot contain them,
  and PostgreSQL text cannot hold NUL. Values are stripped; empty means absent.
* ``mac`` is canonicalised with :func:`bootbrain.identity.canonical_mac`; a junk MAC
  (all-zero, broadcast, multicast: :func:`bootbrain.identity.is_junk_mac`) becomes None.
* ``uuid`` is canonicalised; all-zero and all-F UUIDs mean "not set" and become None.
  Other junk (placeholder UUIDs, "To be filled by O.E.M." serials) is kept here as
  claimed: the lookup ignores it through :func:`bootbrain.identity.uuid_key` and
  :func:`~bootbrain.identity.serial_key`.
* ``buildarch`` and ``platform`` must be short lowercase words (``x86_64``, ``efi``).
* The first occurrence of a parameter wins; repeats, unknown names and oversized
  values are recorded as problems. Problems quote at most a few escaped characters
  of what the machine sent, so the event log cannot be flooded or forged.

:func:`parse_facts` never raises.
"""

from __future__ import annotations

import binascii
import re
import unicodedata
from urllib.parse import unquote_to_bytes

from bootbrain.identity import IdentityError, canonical_mac, canonical_uuid, is_junk_mac

from .types import Facts

#: Longest query looked at; iPXE's own URL buffer is far smaller than this.
MAX_QUERY_BYTES = 8192
#: Longest decoded machine string kept (the inventory columns are 128 characters).
MAX_TEXT_CHARS = 128
#: Most problems recorded for one request.
MAX_PROBLEMS = 12

HEX_FIELDS = {
    "serial": "serial",
    "board-serial": "board_serial",
    "manufacturer": "manufacturer",
    "product": "product",
    "asset": "asset",
}
_WORD_FIELDS = ("buildarch", "platform")
KNOWN_PARAMETERS = frozenset({"uuid", "mac", *HEX_FIELDS, *_WORD_FIELDS})

_HEX_RE = re.compile(rb"(?:[0-9a-fA-F]{2})*")
_WORD_RE = re.compile(r"[a-z0-9_]{1,16}")
_ALL_SAME_UUID = re.compile(r"(0{8}-0{4}-0{4}-0{4}-0{12}|f{8}-f{4}-f{4}-f{4}-f{12})")


def _show(raw: bytes, limit: int = 24) -> str:
    """A short, escaped rendering of machine-sent bytes for the event log."""
    return ascii(raw[:limit].decode("latin-1"))[1:-1] + ("…" if len(raw) > limit else "")


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0

    def add(self, message: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(message)
        else:
            self.dropped += 1

    def result(self) -> tuple[str, ...]:
        if self.dropped:
            return (*self.items, f"{self.dropped} more problems not recorded")
        return tuple(self.items)


def _decode_text(name: str, raw: bytes, problems: _Problems) -> str | None:
    if not raw:
        return None
    if len(raw) > MAX_TEXT_CHARS * 8 or not _HEX_RE.fullmatch(raw):
        problems.add(f"{name}: not hex (the bootstrap sends :hexraw); ignored")
        return None
    data = binascii.unhexlify(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "backslashreplace")
        problems.add(f"{name}: not UTF-8; undecodable bytes kept as \\x escapes")
    if any(unicodedata.category(c) == "Cc" for c in text):
        problems.add(f"{name}: contains control characters; ignored")
        return None
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        problems.add(f"{name}: longer than {MAX_TEXT_CHARS} characters; ignored")
        return None
    return text or None


def _decode_uuid(raw: bytes, problems: _Problems) -> str | None:
    if not raw:
        return None
    try:
        value = canonical_uuid(raw.decode("ascii"))
    except (UnicodeDecodeError, IdentityError):
        problems.add(f"uuid: not a UUID: {_show(raw)}")
        return None
    return None if _ALL_SAME_UUID.fullmatch(value) else value


def _decode_mac(raw: bytes, problems: _Problems) -> str | None:
    if not raw:
        return None
    try:
        mac = canonical_mac(raw.decode("ascii"))
    except (UnicodeDecodeError, IdentityError):
        problems.add(f"mac: not a MAC address: {_show(raw)}")
        return None
    if is_junk_mac(mac):
        problems.add(f"mac: {mac} is not one NIC's address; ignored")
        return None
    return mac


def _decode_word(name: str, raw: bytes, problems: _Problems) -> str | None:
    if not raw:
        return None
    try:
        value = raw.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        value = ""
    if not _WORD_RE.fullmatch(value):
        problems.add(f"{name}: unexpected value {_show(raw)}; ignored")
        return None
    return value


def parse_facts(raw_query: bytes) -> Facts:
    """Canonical facts from the raw query string of ``/ipxe``. Never raises."""
    problems = _Problems()
    if not isinstance(raw_query, bytes | bytearray):
        raw_query = b""
    raw = bytes(raw_query)
    if len(raw) > MAX_QUERY_BYTES:
        problems.add(f"query longer than {MAX_QUERY_BYTES} bytes; the rest ignored")
        raw = raw[:MAX_QUERY_BYTES]

    values: dict[str, bytes] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name_bytes = unquote_to_bytes(raw_name)
        name = name_bytes.decode("ascii", "replace")
        if name not in KNOWN_PARAMETERS:
            problems.add(f"unknown parameter {_show(name_bytes)}; ignored")
            continue
        if name in values:
            problems.add(f"{name}: given more than once; the first is used")
            continue
        values[name] = unquote_to_bytes(raw_value)

    text = {
        field: _decode_text(param, values.get(param, b""), problems)
        for param, field in HEX_FIELDS.items()
    }
    return Facts(
        uuid=_decode_uuid(values.get("uuid", b""), problems),
        mac=_decode_mac(values.get("mac", b""), problems),
        serial=text["serial"],
        board_serial=text["board_serial"],
        manufacturer=text["manufacturer"],
        product=text["product"],
        asset=text["asset"],
        buildarch=_decode_word("buildarch", values.get("buildarch", b""), problems),
        platform=_decode_word("platform", values.get("platform", b""), problems),
        problems=problems.result(),
    )
