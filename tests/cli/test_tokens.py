"""``bootbrain token create | list | check | revoke``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.cli.conftest import Cli

TOKEN_RE = re.compile(r"bbt_[0-9a-f]{8}_\S+")


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_create_prints_the_token_once_and_list_never_does(runner: Cli) -> None:
    out = runner.run(
        "token", "create", "--name", "ci", "--scope", "write", "--expires-days", "90"
    ).stdout
    token = TOKEN_RE.search(out)
    assert token, out
    prefix = token.group(0)[:12]
    assert out.startswith(f"token ci ({prefix}, scope write); shown only now:\n")

    quiet = runner.run("token", "create", "--name", "reader", "--quiet").stdout
    assert TOKEN_RE.fullmatch(quiet.strip()), quiet  # only the token, for scripts

    listed = runner.json("token", "list", "--json")
    assert [(t["name"], t["scope"]) for t in listed] == [
        ("admin", "write"),
        ("ci", "write"),
        ("reader", "read"),  # the default scope
    ]
    ci = listed[1]
    assert ci["prefix"] == prefix
    expires = _when(ci["expires_at"]) - _when(ci["created_at"])
    assert abs(expires - timedelta(days=90)) < timedelta(minutes=1)
    assert listed[2]["expires_at"] is None
    table = runner.run("token", "list").stdout
    for text in (token.group(0), quiet.strip()):
        assert text not in table and text not in str(listed)
    assert prefix in table


def test_check_and_revoke(runner: Cli) -> None:
    token = runner.run("token", "create", "--name", "ci", "--scope", "write", "-q").stdout.strip()
    path = runner.home / "ci-token"
    path.write_text(token + "\n")
    assert runner.run("token", "check", str(path)).stdout == "token ci (scope write) is valid\n"
    ci = next(t for t in runner.json("token", "list", "--json") if t["name"] == "ci")
    assert ci["revoked_at"] is None

    out = runner.run("token", "revoke", str(ci["id"])).stdout
    assert out == f"revoked ci ({ci['prefix']})\n"
    revoked = next(t for t in runner.json("token", "list", "--json") if t["name"] == "ci")
    assert revoked["revoked_at"] is not None
    err = runner.fails("token", "check", str(path), code=1)
    assert "token not valid here: token revoked" in err
    assert token not in err

    # The other tokens still work.
    admin = next(t for t in runner.json("token", "list", "--json") if t["name"] == "admin")
    assert admin["revoked_at"] is None


def test_check_tells_a_token_from_elsewhere(runner: Cli) -> None:
    path = runner.home / "kept"
    path.write_text("bbt_0123abcd_" + "x" * 43 + "\n")
    assert "token not valid here: unknown token" in runner.fails(
        "token", "check", str(path), code=1
    )
    path.write_text("not a token\n")
    assert "token not valid here: malformed token" in runner.fails(
        "token", "check", str(path), code=1
    )
    assert "No such file or directory" in runner.fails(
        "token", "check", str(runner.home / "missing")
    )


def test_bad_token_values_name_the_option(runner: Cli) -> None:
    assert "expires_in_days" in runner.fails(
        "token", "create", "--name", "x", "--expires-days", "0"
    )
    assert "--scope" in runner.fails("token", "create", "--name", "x", "--scope", "admin")
    assert "--name" in runner.fails("token", "create")
    assert "api_token 99 does not exist" in runner.fails("token", "revoke", "99")
    assert "'abc' is not a valid integer" in runner.fails("token", "revoke", "abc")
    assert [t["name"] for t in runner.json("token", "list", "--json")] == ["admin"]


def test_expiry_is_in_the_future(runner: Cli) -> None:
    runner.run("token", "create", "--name", "soon", "--expires-days", "1", "-q")
    soon = next(t for t in runner.json("token", "list", "--json") if t["name"] == "soon")
    assert _when(soon["expires_at"]) > datetime.now(UTC)


def test_a_lease_token_for_the_dhcp_hook(runner: Cli) -> None:
    """What the hook docs and the Ansible role do: a lease-scope token, kept in a file,
    and ``token check --scope lease`` refusing the write token an older install kept."""
    token = runner.run("token", "create", "--name", "dhcp-hook", "--scope", "lease", "-q")
    path = runner.home / "leasehook.token"
    path.write_text(token.stdout.strip() + "\n")
    listed = runner.json("token", "list", "--json")
    assert ("dhcp-hook", "lease") in [(t["name"], t["scope"]) for t in listed]
    ok = runner.run("token", "check", "--scope", "lease", str(path)).stdout
    assert ok == "token dhcp-hook (scope lease) is valid\n"
    assert runner.run("token", "check", str(path)).stdout == ok

    old = runner.run("token", "create", "--name", "old-hook", "--scope", "write", "-q").stdout
    path.write_text(old.strip() + "\n")
    err = runner.fails("token", "check", "--scope", "lease", str(path), code=1)
    assert "token not valid here: old-hook has scope write, not lease" in err
    assert "'lease'" in runner.fails("token", "create", "--name", "x", "--scope", "admin")
