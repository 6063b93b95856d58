"""parse_facts: the raw /ipxe query, as this iPXE sends it, into canonical Facts."""

from __future__ import annotations

import pytest

from bootbrain.boot.facts import MAX_PROBLEMS, MAX_QUERY_BYTES, MAX_TEXT_CHARS, parse_facts
from bootbrain.boot.types import Facts


def hx(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return data.hex()


# What real iPXE sent for the bootstrap's query (BRIEF; serial X${manufacturer}Y).
REAL_QUERY = (
    b"uuid=4c4c4544-0042-3610-8052-b4c04f4e3232&mac=52-54-00-aa-cc-01"
    b"&serial=58247b6d616e7566616374757265727d59&board-serial="
    b"&manufacturer=4c61622056656e646f7220496e632e&product=4c6162426f782039303030"
    b"&asset=&buildarch=x86_64&platform=efi"
)


def test_real_ipxe_query() -> None:
    facts = parse_facts(REAL_QUERY)
    assert facts == Facts(
        uuid="4c4c4544-0042-3610-8052-b4c04f4e3232",
        mac="52:54:00:aa:cc:01",
        serial="X${manufacturer}Y",
        board_serial=None,
        manufacturer="Lab Vendor Inc.",
        product="LabBox 9000",
        asset=None,
        buildarch="x86_64",
        platform="efi",
        problems=(),
    )


def test_empty_query_gives_empty_facts() -> None:
    assert parse_facts(b"") == Facts(None, None, None, None, None, None, None, None, None)


def test_plus_is_not_a_space() -> None:
    facts = parse_facts(b"product=" + hx("Standard PC (i440FX + PIIX, 1996)").encode())
    assert facts.product == "Standard PC (i440FX + PIIX, 1996)"
    assert parse_facts(b"buildarch=x86+64").buildarch is None  # '+' kept, so not a word


def test_percent_decoding_only() -> None:
    facts = parse_facts(b"mac=52%2d54%2D00-aa-cc-01&%70latform=pcbios")
    assert facts.mac == "52:54:00:aa:cc:01"
    assert facts.platform == "pcbios"


def test_mac_forms() -> None:
    assert parse_facts(b"mac=52:54:00:AA:CC:01").mac == "52:54:00:aa:cc:01"
    assert parse_facts(b"mac=525400aacc01").mac == "52:54:00:aa:cc:01"


def test_bad_mac_is_dropped_with_a_problem() -> None:
    facts = parse_facts(b"mac=52-54-00-aa-cc")
    assert facts.mac is None
    assert facts.problems == ("mac: not a MAC address: 52-54-00-aa-cc",)


def test_uuid_canonical_lowercase() -> None:
    facts = parse_facts(b"uuid=4C4C4544-0042-3610-8052-B4C04F4E3232")
    assert facts.uuid == "4c4c4544-0042-3610-8052-b4c04f4e3232"


@pytest.mark.parametrize(
    "value",
    [b"00000000-0000-0000-0000-000000000000", b"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"],
)
def test_all_zero_and_all_f_uuid_are_absent(value: bytes) -> None:
    facts = parse_facts(b"uuid=" + value)
    assert facts.uuid is None
    assert facts.problems == ()


def test_placeholder_uuid_is_kept_for_the_lookup_to_ignore() -> None:
    facts = parse_facts(b"uuid=03000200-0400-0500-0006-000700080009")
    assert facts.uuid == "03000200-0400-0500-0006-000700080009"


def test_bad_uuid_is_dropped_with_a_problem() -> None:
    facts = parse_facts(b"uuid=not-a-uuid")
    assert facts.uuid is None
    assert facts.problems == ("uuid: not a UUID: not-a-uuid",)


def test_junk_serial_is_kept() -> None:
    assert parse_facts(b"serial=" + hx("To be filled by O.E.M.").encode()).serial == (
        "To be filled by O.E.M."
    )


def test_hex_values_are_stripped_and_empty_means_absent() -> None:
    facts = parse_facts(b"serial=" + hx("  SN 1  ").encode() + b"&asset=" + hx("   ").encode())
    assert facts.serial == "SN 1"
    assert facts.asset is None


def test_uppercase_hex_accepted() -> None:
    assert parse_facts(b"serial=" + hx("ab").upper().encode()).serial == "ab"


@pytest.mark.parametrize("value", [b"SN-MATRIX-1", b"abc", b"zz", b"A%26B"])
def test_plain_values_are_not_guessed(value: bytes) -> None:
    facts = parse_facts(b"serial=" + value)
    assert facts.serial is None
    assert facts.problems == ("serial: not hex (the bootstrap sends :hexraw); ignored",)


def test_uristring_style_serial_is_cut_and_refused() -> None:
    # What the :uristring bootstrap would have sent for serial "A&B" (BRIEF).
    facts = parse_facts(b"serial=A&B&platform=efi")
    assert facts.serial is None
    assert facts.platform == "efi"
    assert facts.problems == (
        "unknown parameter B; ignored",
        "serial: not hex (the bootstrap sends :hexraw); ignored",
    )


def test_non_utf8_is_kept_as_escapes_with_a_problem() -> None:
    facts = parse_facts(b"manufacturer=" + hx(b"Soci\xe9t\xe9").encode())
    assert facts.manufacturer == "Soci\\xe9t\\xe9"
    assert facts.problems == ("manufacturer: not UTF-8; undecodable bytes kept as \\x escapes",)


@pytest.mark.parametrize("raw", [b"A\x00B", b"line\nbreak", b"\x1b[2J", b"tab\there"])
def test_control_characters_drop_the_value(raw: bytes) -> None:
    facts = parse_facts(b"serial=" + raw.hex().encode())
    assert facts.serial is None
    assert facts.problems == ("serial: contains control characters; ignored",)


def test_over_long_text_is_dropped() -> None:
    facts = parse_facts(b"product=" + hx("x" * (MAX_TEXT_CHARS + 1)).encode())
    assert facts.product is None
    assert facts.problems == (f"product: longer than {MAX_TEXT_CHARS} characters; ignored",)
    assert parse_facts(b"product=" + hx("x" * MAX_TEXT_CHARS).encode()).product == (
        "x" * MAX_TEXT_CHARS
    )


def test_huge_hex_is_refused_before_decoding() -> None:
    facts = parse_facts(b"serial=" + b"41" * 2000)
    assert facts.serial is None
    assert facts.problems == ("serial: not hex (the bootstrap sends :hexraw); ignored",)


def test_duplicate_parameter_first_wins() -> None:
    facts = parse_facts(b"serial=" + hx("first").encode() + b"&serial=" + hx("second").encode())
    assert facts.serial == "first"
    assert facts.problems == ("serial: given more than once; the first is used",)


def test_unknown_parameter_is_reported_escaped() -> None:
    facts = parse_facts(b"evil%0a%00name=1&platform=efi")
    assert facts.platform == "efi"
    assert facts.problems == ("unknown parameter evil\\n\\x00name; ignored",)


def test_parameter_without_equals_is_an_empty_value() -> None:
    assert parse_facts(b"serial&platform=efi").platform == "efi"


@pytest.mark.parametrize("value", [b"X86_64", b"arm64", b"riscv64"])
def test_buildarch_words(value: bytes) -> None:
    assert parse_facts(b"buildarch=" + value).buildarch == value.decode().lower()


@pytest.mark.parametrize(
    "value", [b"x86 64", b"${platform}", b"averyveryverylongarch", b"\xff", b"efi;exit"]
)
def test_bad_platform_is_dropped(value: bytes) -> None:
    facts = parse_facts(b"platform=" + value)
    assert facts.platform is None
    assert len(facts.problems) == 1
    assert facts.problems[0].startswith("platform: unexpected value")


def test_over_long_query_is_cut_with_a_problem() -> None:
    query = b"platform=efi&" + b"x" * MAX_QUERY_BYTES
    facts = parse_facts(query)
    assert facts.platform == "efi"
    assert facts.problems[0] == f"query longer than {MAX_QUERY_BYTES} bytes; the rest ignored"


def test_problem_count_is_capped() -> None:
    query = b"&".join(b"junk%d=1" % i for i in range(50))
    facts = parse_facts(query)
    assert len(facts.problems) == MAX_PROBLEMS + 1
    assert facts.problems[-1] == f"{50 - MAX_PROBLEMS} more problems not recorded"


def test_long_problem_values_are_truncated() -> None:
    facts = parse_facts(b"mac=" + b"z" * 100)
    assert facts.problems == ("mac: not a MAC address: " + "z" * 24 + "…",)


def test_not_bytes_is_treated_as_empty() -> None:
    assert parse_facts("uuid=x") == parse_facts(b"")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mac", ["00-00-00-00-00-00", "ff-ff-ff-ff-ff-ff", "01-00-5e-7f-00-01", "03-00-00-00-00-00"]
)
def test_junk_mac_is_not_an_identity(mac: str) -> None:
    facts = parse_facts(f"mac={mac}&uuid=4c4c4544-0042-3610-8052-b4c04f4e3232".encode())
    assert facts.mac is None
    assert facts.uuid == "4c4c4544-0042-3610-8052-b4c04f4e3232"
    assert any(p.startswith("mac:") for p in facts.problems)
