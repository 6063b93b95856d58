"""The lease hook, run as the DHCP servers run it: a separate process per event.

A stdlib HTTP server on 127.0.0.1 plays bootbrain's ``POST /api/v1/lease-events``
(202 for a new or already-seen id), or misbehaves on purpose: refuses connections,
answers 401/422/500, never answers, or trickles its answer one byte at a time.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bootbrain.identity import canonical_mac
from bootbrain.integrations import leasehook, render_hook_conf, render_hook_wrapper
from tests.ports import free_port

HOOK = Path(leasehook.__file__)
TOKEN = "bb_test_token"
MAC = "52:54:00:aa:bb:01"


class Endpoint:
    """Stand-in for bootbrain's lease-event endpoint, with switchable behaviour."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | 401 | 422 | 500 | hang | trickle
        self.received: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.requests = 0
        self.auth: list[str | None] = []
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                endpoint.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                endpoint.auth.append(self.headers.get("Authorization"))
                if endpoint.mode == "hang":
                    endpoint.release.wait(30)
                    return
                if endpoint.mode == "trickle":
                    self.wfile.write(b"H")
                    for _ in range(60):
                        if endpoint.release.wait(0.2):
                            return
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    return
                status = {"401": 401, "422": 422, "500": 500}.get(endpoint.mode, 202)
                if status == 202 and self.path == "/api/v1/lease-events":
                    event = json.loads(body)
                    if event["id"] not in endpoint.seen:
                        endpoint.seen.add(event["id"])
                        endpoint.received.append(event)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


def dead_url() -> str:
    """A loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def run_hook(tmp: Path, url: str, *args: str, env: dict[str, str] | None = None,
             backoff: float = 0, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str],
                                                               float]:
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    conf = tmp / "leasehook.conf"
    conf.write_text(render_hook_conf(url, token_file, tmp / "spool", backoff=backoff))
    full_env = {"BOOTBRAIN_HOOK_CONFIG": str(conf), **(env or {})}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-S", "-E", str(HOOK), *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return proc, time.monotonic() - start


def spooled(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in leasehook.spooled(tmp / "spool")]


# --- delivery ---------------------------------------------------------------------------


def test_dnsmasq_event_is_delivered(tmp_path: Path, endpoint: Endpoint) -> None:
    env = {
        "DNSMASQ_VENDOR_CLASS": "PXEClient:Arch:00007:UNDI:003016",
        "DNSMASQ_USER_CLASS0": "iPXE",
        "DNSMASQ_TAGS": "ipxe efi64 br0",
    }
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", "add", "52:54:00:AA:BB:01",
                       "10.0.0.50", "node-1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # dnsmasq reads a script's stdout only for "init"; say nothing
    [event] = endpoint.received
    assert event["source"] == "dnsmasq" and event["action"] == "add"
    assert event["mac"] == MAC and event["ip"] == "10.0.0.50"
    assert event["hostname"] == "node-1"
    assert event["user_class"] == "iPXE" and event["arch"] == 7
    assert event["at"].endswith("Z") and len(event["id"]) == 36
    assert set(event) == {"id", "source", "action", "mac", "ip", "hostname", "user_class",
                          "arch", "at"}
    assert endpoint.auth == [f"Bearer {TOKEN}"]
    assert spooled(tmp_path) == []


def test_kea_committed_with_several_leases(tmp_path: Path, endpoint: Endpoint) -> None:
    env = {
        "LEASES4_SIZE": "2",
        "LEASES4_AT0_ADDRESS": "10.0.0.60", "LEASES4_AT0_HWADDR": MAC,
        "LEASES4_AT0_HOSTNAME": "node-2.example.org.",
        "LEASES4_AT1_ADDRESS": "10.0.0.61", "LEASES4_AT1_HWADDR": "52:54:00:aa:bb:02",
        "LEASES4_AT1_HOSTNAME": "",
        "DELETED_LEASES4_SIZE": "1",
        "DELETED_LEASES4_AT0_ADDRESS": "10.0.0.59", "DELETED_LEASES4_AT0_HWADDR": MAC,
        "QUERY4_TYPE": "DHCPREQUEST",
    }
    proc, _ = run_hook(tmp_path, endpoint.url, "kea", "leases4_committed", env=env)
    assert proc.returncode == 0, proc.stderr
    got = [(e["action"], e["mac"], e["ip"], e["hostname"]) for e in endpoint.received]
    assert got == [
        ("commit", MAC, "10.0.0.60", "node-2.example.org"),
        ("commit", "52:54:00:aa:bb:02", "10.0.0.61", None),
        ("del", MAC, "10.0.0.59", None),
    ]
    assert all(e["source"] == "kea" and e["arch"] is None and e["user_class"] is None
               for e in endpoint.received)


@pytest.mark.parametrize(("hook", "action"), [("lease4_renew", "renew"),
                                              ("lease4_release", "release"),
                                              ("lease4_expire", "expire")])
def test_kea_single_lease_hooks(tmp_path: Path, endpoint: Endpoint, hook: str,
                                action: str) -> None:
    env = {"LEASE4_ADDRESS": "10.0.0.70", "LEASE4_HWADDR": MAC, "LEASE4_HOSTNAME": "n"}
    # Kea runs the script with the hook point as its only argument: no "kea" word.
    proc, _ = run_hook(tmp_path, endpoint.url, hook, env=env)
    assert proc.returncode == 0, proc.stderr
    [event] = endpoint.received
    assert (event["source"], event["action"], event["ip"]) == ("kea", action, "10.0.0.70")


def test_wrapper_runs_with_keas_empty_environment(tmp_path: Path, endpoint: Endpoint) -> None:
    """Kea gives the script its LEASE4_* variables and nothing else: no PATH, no HOME."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    conf = tmp_path / "leasehook.conf"
    conf.write_text(render_hook_conf(endpoint.url, token, tmp_path / "spool"))
    wrapper = tmp_path / "kea-hook"
    wrapper.write_text(render_hook_wrapper("kea", python=sys.executable, config=conf))
    wrapper.chmod(0o755)
    env = {"LEASE4_ADDRESS": "10.0.0.71", "LEASE4_HWADDR": MAC}
    proc = subprocess.run([str(wrapper), "lease4_renew"], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [e["ip"] for e in endpoint.received] == ["10.0.0.71"]


# --- spool and replay ----------------------------------------------------------------------


def test_spools_when_bootbrain_is_down_and_replays_later(tmp_path: Path,
                                                         endpoint: Endpoint) -> None:
    down = dead_url()
    for i in range(3):
        proc, took = run_hook(tmp_path, down, "dnsmasq", "old", MAC, f"10.0.0.{80 + i}")
        assert proc.returncode == 0
        assert took < 2.0
        assert "unreachable" in proc.stderr
    waiting = spooled(tmp_path)
    assert [e["ip"] for e in waiting] == ["10.0.0.80", "10.0.0.81", "10.0.0.82"]

    # bootbrain is back: the next event first sends what waited, oldest first.
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", "del", MAC, "10.0.0.83")
    assert proc.returncode == 0, proc.stderr
    assert [e["ip"] for e in endpoint.received] == [f"10.0.0.{80 + i}" for i in range(4)]
    assert [e["id"] for e in endpoint.received[:3]] == [e["id"] for e in waiting]
    assert spooled(tmp_path) == []


def test_backoff_spools_without_trying(tmp_path: Path, endpoint: Endpoint) -> None:
    proc, _ = run_hook(tmp_path, dead_url(), "dnsmasq", "add", MAC, "10.0.0.90", backoff=60)
    assert "unreachable" in proc.stderr
    # Within the back-off an event costs a file write, not a connection attempt.
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", "old", MAC, "10.0.0.90", backoff=60)
    assert proc.returncode == 0 and endpoint.requests == 0
    assert len(spooled(tmp_path)) == 2
    # An explicit replay ignores the back-off and clears it.
    proc, _ = run_hook(tmp_path, endpoint.url, "replay", "10", backoff=60)
    assert proc.returncode == 0, proc.stderr
    assert "delivered 2" in proc.stdout
    assert len(endpoint.received) == 2 and spooled(tmp_path) == []
    assert not (tmp_path / "spool" / ".down").exists()


def test_unresponsive_bootbrain_blocks_at_most_the_budget(tmp_path: Path,
                                                          endpoint: Endpoint) -> None:
    endpoint.mode = "hang"
    proc, took = run_hook(tmp_path, endpoint.url, "dnsmasq", "add", MAC, "10.0.0.91")
    assert proc.returncode == 0
    assert took < 3.0, took
    assert [e["ip"] for e in spooled(tmp_path)] == ["10.0.0.91"]


def test_trickling_bootbrain_blocks_at_most_the_budget(tmp_path: Path,
                                                       endpoint: Endpoint) -> None:
    """Socket timeouts bound each read; the hard deadline bounds the whole run."""
    endpoint.mode = "trickle"
    proc, took = run_hook(tmp_path, endpoint.url, "dnsmasq", "add", MAC, "10.0.0.92")
    assert proc.returncode == 0
    assert took < 3.0, took
    assert [e["ip"] for e in spooled(tmp_path)] == ["10.0.0.92"]


def test_auth_failure_keeps_events(tmp_path: Path, endpoint: Endpoint) -> None:
    endpoint.mode = "401"
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", "add", MAC, "10.0.0.93")
    assert proc.returncode == 0
    assert "401" in proc.stderr and "token" in proc.stderr
    assert len(spooled(tmp_path)) == 1


def test_refused_event_is_dropped_not_retried_forever(tmp_path: Path,
                                                      endpoint: Endpoint) -> None:
    endpoint.mode = "422"
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", "add", MAC, "10.0.0.94")
    assert proc.returncode == 0
    assert "refused" in proc.stderr and "10.0.0.94" in proc.stderr  # logged in full
    assert spooled(tmp_path) == []


def test_server_error_keeps_order(tmp_path: Path, endpoint: Endpoint) -> None:
    endpoint.mode = "500"
    for i in range(2):
        run_hook(tmp_path, endpoint.url, "dnsmasq", "add", MAC, f"10.0.1.{i + 1}")
    assert [e["ip"] for e in spooled(tmp_path)] == ["10.0.1.1", "10.0.1.2"]
    endpoint.mode = "ok"
    result = leasehook.replay_spool(tmp_path / "spool", endpoint.url, TOKEN, budget=10)
    assert (result.delivered, result.remaining, result.error) == (2, 0, None)
    assert [e["ip"] for e in endpoint.received] == ["10.0.1.1", "10.0.1.2"]


def test_concurrent_replays_send_each_event_once(tmp_path: Path, endpoint: Endpoint) -> None:
    """Kea runs hooks concurrently ("sync": false); the spool lock keeps them apart."""
    spool = tmp_path / "spool"
    ids = []
    for i in range(40):
        event = leasehook.events_from_dnsmasq(["add", MAC, f"10.0.2.{i + 1}"], {})[0]
        leasehook.spool_event(spool, event)
        ids.append(event["id"])
    results: list[leasehook.ReplayResult] = []

    def replay() -> None:
        results.append(leasehook.replay_spool(spool, endpoint.url, TOKEN, budget=20))

    threads = [threading.Thread(target=replay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert endpoint.requests == 40  # not one duplicate on the wire
    assert [e["id"] for e in endpoint.received] == ids
    assert sum(r.delivered for r in results) == 40 and spooled(tmp_path) == []


def test_replay_spool_respects_its_budget(tmp_path: Path, endpoint: Endpoint) -> None:
    spool = tmp_path / "spool"
    for i in range(3):
        leasehook.spool_event(spool, leasehook.events_from_dnsmasq(["add", MAC,
                                                                    f"10.0.3.{i + 1}"], {})[0])
    endpoint.mode = "hang"
    start = time.monotonic()
    result = leasehook.replay_spool(spool, endpoint.url, TOKEN, budget=0.5)
    assert time.monotonic() - start < 1.5
    assert result.delivered == 0 and result.remaining == 3 and result.error


def test_nothing_configured_still_spools(tmp_path: Path) -> None:
    env = {"BOOTBRAIN_HOOK_CONFIG": str(tmp_path / "absent.conf"),
           "BOOTBRAIN_HOOK_SPOOL_DIR": str(tmp_path / "spool")}
    proc = subprocess.run([sys.executable, str(HOOK), "dnsmasq", "add", MAC, "10.0.0.95"],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0
    assert "does not exist" in proc.stderr
    assert [e["ip"] for e in spooled(tmp_path)] == ["10.0.0.95"]


def test_unwritable_spool_falls_back_to_a_direct_post(tmp_path: Path,
                                                      endpoint: Endpoint) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool directory should be")
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", "add", MAC, "10.0.0.96")
    assert proc.returncode == 0
    assert [e["ip"] for e in endpoint.received] == ["10.0.0.96"]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["dnsmasq", "add", "52:54:00:aa:bb", "10.0.0.1"], {}),
        (["dnsmasq", "add", "20-52:54:00:aa:bb:01", "10.0.0.1"], {}),  # non-Ethernet hwaddr
        (["dnsmasq", "add", MAC, "10.0.0.256"], {}),
        (["dnsmasq", "add", MAC, "010.0.0.1"], {}),
        (["dnsmasq", "add", MAC, "0.0.0.0"], {}),
        (["dnsmasq", "add", MAC], {}),
        (["dnsmasq", "add"], {}),
        (["dnsmasq"], {}),
        (["dnsmasq", "frobnicate", MAC, "10.0.0.1"], {}),
        (["kea", "lease4_decline"], {"LEASE4_ADDRESS": "10.0.0.1", "LEASE4_HWADDR": MAC}),
        (["kea", "no_such_hook"], {}),
        (["kea"], {}),
        (["kea", "leases4_committed"], {"LEASES4_SIZE": "1"}),  # truncated environment
        (["kea", "leases4_committed"], {"LEASES4_SIZE": "lots"}),
        (["kea", "lease4_renew"], {"LEASE4_ADDRESS": "10.0.0.1"}),
        (["kea", "lease4_renew"], {"LEASE4_ADDRESS": "10.0.0.1", "LEASE4_HWADDR": "zz\n"}),
        ([], {}),
        (["--help"], {}),
    ],
)
def test_bad_input_is_logged_and_ignored(tmp_path: Path, endpoint: Endpoint, args: list[str],
                                         env: dict[str, str]) -> None:
    proc, _ = run_hook(tmp_path, endpoint.url, *args, env=env)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip(), "bad input must be logged"
    assert endpoint.received == [] and spooled(tmp_path) == []


@pytest.mark.parametrize("action", ["tftp", "init", "arp-add"])
def test_dnsmasq_non_lease_calls_are_ignored_quietly(tmp_path: Path, endpoint: Endpoint,
                                                     action: str) -> None:
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", action, "12345", "10.0.0.1",
                       "/undionly.kpxe")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    assert endpoint.received == []


def test_machine_controlled_strings_are_sanitised() -> None:
    [event] = leasehook.events_from_dnsmasq(
        ["add", MAC, "10.0.0.1", "bad host;name"],
        {"DNSMASQ_USER_CLASS0": "iPXE\n${x}\x00", "DNSMASQ_VENDOR_CLASS": "PXEClient:Arch:99999"},
    )
    assert event["hostname"] is None and event["user_class"] is None and event["arch"] is None
    [http] = leasehook.events_from_dnsmasq(
        ["old", MAC, "10.0.0.1"], {"DNSMASQ_VENDOR_CLASS": "HTTPClient:Arch:00016:UNDI:003000"}
    )
    assert http["arch"] == 16


def test_spool_is_never_world_readable_under_umask_022(tmp_path: Path) -> None:
    """The spool is shared by the DHCP server's user (writes) and bootbrain's group
    (reads, removes): group at most, whatever the umask the hook inherits."""
    previous = os.umask(0o022)
    try:
        proc, _ = run_hook(tmp_path, dead_url(), "dnsmasq", "add", MAC, "10.0.0.96")
    finally:
        os.umask(previous)
    assert proc.returncode == 0
    spool = tmp_path / "spool"
    modes = {p.name: p.stat().st_mode & 0o777 for p in [spool, *spool.iterdir()]}
    assert len(modes) >= 2  # the directory and the spooled event (and the lock)
    assert {n: oct(m) for n, m in modes.items() if m & 0o007} == {}


def test_symlinked_spool_file_is_not_read(tmp_path: Path, endpoint: Endpoint) -> None:
    """Whoever may write the spool must not get the hook (root, under dnsmasq) to read
    another file: a spooled name that is a symlink is moved aside, unread and unsent."""
    spool = tmp_path / "spool"
    spool.mkdir()
    target = tmp_path / "not-for-the-hook.json"
    event = leasehook.events_from_dnsmasq(["add", MAC, "10.0.0.98"], {})[0]
    event["hostname"] = "secret-content"
    target.write_text(json.dumps(event))
    (spool / "00000000000000000001-x.json").symlink_to(target)
    (spool / "00000000000000000002-y.json").symlink_to("/etc/passwd")
    proc, _ = run_hook(tmp_path, endpoint.url, "dnsmasq", "add", MAC, "10.0.0.99")
    assert proc.returncode == 0
    assert [e["ip"] for e in endpoint.received] == ["10.0.0.99"]
    assert "secret-content" not in proc.stderr and "root:" not in proc.stderr
    assert "symlink" in proc.stderr
    assert leasehook.spooled(spool) == []
    assert (spool / ".bad-00000000000000000001-x.json").is_symlink()  # kept to look at
    assert target.read_text() == json.dumps(event)


def test_a_huge_spooled_event_is_not_logged_in_full(tmp_path: Path, endpoint: Endpoint) -> None:
    """A 2 MB event (bootbrain would refuse it: 413) is set aside, and the log says so
    in a line, not in 2 MB; a refused event of ordinary size is quoted, cut short."""
    spool = tmp_path / "spool"
    spool.mkdir()
    event = leasehook.events_from_dnsmasq(["add", MAC, "10.0.0.100"], {})[0]
    (spool / "00000000000000000001-big.json").write_text(
        json.dumps({**event, "hostname": "h" * 2_000_000})
    )
    endpoint.mode = "422"
    (spool / "00000000000000000002-odd.json").write_text(
        json.dumps({**event, "id": "odd", "user_class": "u" * 20_000})
    )
    proc, _ = run_hook(tmp_path, endpoint.url, "replay", "5")
    assert len(proc.stderr) < 2_000, proc.stderr[:500]
    assert "00000000000000000001-big.json" in proc.stderr and "moved aside" in proc.stderr
    assert "refused" in proc.stderr and "20" in proc.stderr  # the size of what was cut
    assert leasehook.spooled(spool) == []
    assert endpoint.requests == 1  # the 2 MB one was never sent


def test_corrupt_spool_file_is_moved_aside(tmp_path: Path, endpoint: Endpoint) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000000000000000001-x.json").write_text("{not json")
    leasehook.spool_event(spool, leasehook.events_from_dnsmasq(["add", MAC, "10.0.0.97"], {})[0])
    result = leasehook.replay_spool(spool, endpoint.url, TOKEN, budget=5)
    assert result.delivered == 1 and result.remaining == 0
    assert (spool / ".bad-00000000000000000001-x.json").exists()


# --- the file itself -------------------------------------------------------------------------


def test_hook_imports_only_the_standard_library() -> None:
    tree = ast.parse(HOOK.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


@pytest.mark.parametrize("value", ["52:54:00:AA:BB:01", "52:54:00:aa:bb:01",
                                   "00:00:00:00:00:00", "fF:ff:FF:ff:ff:FF"])
def test_mac_canonical_form_matches_the_inventorys(value: str) -> None:
    [event] = leasehook.events_from_dnsmasq(["add", value, "10.0.0.1"], {})
    assert event["mac"] == canonical_mac(value)


def test_config_file_and_environment(tmp_path: Path) -> None:
    token = tmp_path / "tok"
    token.write_text("  secret \n")
    conf = tmp_path / "c.conf"
    conf.write_text("# comment\nurl = http://brain:8080/x/\ntoken_file=" + str(token)
                    + "\nspool_dir=/var/spool/bb\ntimeout=1.5\nbogus\n")
    cfg = leasehook.load_config({"BOOTBRAIN_HOOK_CONFIG": str(conf),
                                 "BOOTBRAIN_HOOK_BACKOFF": "3"})
    assert cfg.url == "http://brain:8080/x" and cfg.token == "secret"
    assert cfg.spool_dir == Path("/var/spool/bb")
    assert (cfg.timeout, cfg.budget, cfg.backoff) == (1.5, 2.0, 3.0)
    bad = leasehook.load_config({"BOOTBRAIN_HOOK_CONFIG": str(conf),
                                 "BOOTBRAIN_HOOK_URL": "ftp://x", "BOOTBRAIN_HOOK_TIMEOUT": "-1"})
    assert bad.url is None and len(bad.problems) == 2


def test_hook_starts_fast(tmp_path: Path) -> None:
    """Started once per DHCP event: it must stay a small, quick program."""
    env = {"BOOTBRAIN_HOOK_CONFIG": str(tmp_path / "none"),
           "BOOTBRAIN_HOOK_SPOOL_DIR": str(tmp_path / "spool")}
    best = 10.0
    for _ in range(3):
        start = time.monotonic()
        subprocess.run([sys.executable, "-S", "-E", str(HOOK), "dnsmasq", "tftp", "1", "2", "3"],
                       env=env, check=True, timeout=30)
        best = min(best, time.monotonic() - start)
    assert best < 0.5, best
    assert os.access(HOOK, os.R_OK)


def test_drain_spool_without_http(tmp_path: Path) -> None:
    """How bootbrain can take the spool straight into its database at start-up."""
    spool = tmp_path / "spool"
    for i in range(3):
        leasehook.spool_event(spool, leasehook.events_from_dnsmasq(["add", MAC,
                                                                    f"10.0.4.{i + 1}"], {})[0])
    taken: list[str] = []
    failures = ["database is locked"]  # the second event fails once

    def deliver(event: dict[str, Any], raw: bytes) -> str:
        if event["ip"] == "10.0.4.2" and failures:
            raise RuntimeError(failures.pop())
        taken.append(event["ip"])
        return "ok"

    first = leasehook.drain_spool(spool, deliver, budget=5)
    assert first.error is not None and "database is locked" in first.error
    assert (first.delivered, first.remaining) == (1, 2)
    second = leasehook.drain_spool(spool, deliver, budget=5)
    assert second.error is None and taken == ["10.0.4.1", "10.0.4.2", "10.0.4.3"]
