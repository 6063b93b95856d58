"""The storm's simulated iPXE client follows bootbrain's own scripts as iPXE would.

Each test serves scripts that bootbrain renders (goldens or the render functions) from
a small aiohttp server on 127.0.0.1, and checks what a simulated machine fetched and
how its run ended.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bench.ipxe_sim import Identity, Link, Machine, Outcome, Trace, expand, split_commands
from bootbrain.boot.render import render_bootstrap, render_error

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
MAC = "52:54:00:aa:cc:01"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def test_expand_formats_like_ipxe() -> None:
    settings = {"mac": MAC, "serial": "A&B ${x}", "uuid": ""}
    assert expand("${netX/mac:hexhyp}", settings) == "52-54-00-aa-cc-01"
    assert expand("s=${serial:hexraw}&u=${uuid}", settings) == "s=4126422024" + "7b787d&u="
    assert expand("${missing}x", settings) == "x"


def test_operators_split_commands() -> None:
    assert split_commands("iseq ${a} 3 && goto x || sleep 1") == [
        ("", "iseq ${a} 3"),
        ("&&", "goto x"),
        ("||", "sleep 1"),
    ]


async def _run(routes: dict[str, Handler], first: str = "/boot.ipxe") -> tuple[Trace, list[str]]:
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path_qs}")
        return await handler(request)

    app = web.Application(middlewares=[record])
    for path, handler in routes.items():
        method, _, route = path.rpartition(" ")
        app.router.add_route(method or "GET", route, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            machine = Machine(Identity(mac=MAC), Link(session, 0, connect_timeout=2))
            machine.settings["test-base"] = base
            trace = await asyncio.wait_for(machine.run(base + first), timeout=60)
    finally:
        await runner.cleanup()
    return trace, seen


def _script(text: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        return web.Response(text=text.replace("http://10.0.0.1:8080", base))

    return handler


def _status(status: int, then: Handler | None = None, times: int = 10**6) -> Handler:
    """Answer ``status`` the first ``times`` calls, then hand over to ``then``."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls <= times or then is None:
            return web.Response(status=status, text="no")
        return await then(request)

    return handler


async def _ok(request: web.Request) -> web.Response:
    return web.Response(body=b"\0" * 4096)


def _decision_routes(script: str) -> dict[str, Handler]:
    return {
        "/ipxe": _script(script),
        "/assets/debian-12/vmlinuz": _ok,
        "/assets/debian-12/initrd.gz": _ok,
        "/assets/firmware.cpio.gz": _ok,
        "/boot/tok-7f3a9c/metadata.json": _ok,
        "POST /boot/tok-7f3a9c/done": _ok,
    }


def _bootstrap(retries: int) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        text = render_bootstrap(f"http://{request.host}", retries, 1, random.Random(0))
        return web.Response(text=text)

    return handler


def test_a_linux_decision_boots_and_completes() -> None:
    golden = (GOLDEN / "linux_static_token.ipxe").read_text()
    routes = {"/boot.ipxe": _bootstrap(2), **_decision_routes(golden)}
    trace, seen = asyncio.run(_run(routes))
    assert trace.outcome == Outcome.COMPLETED, trace
    paths = [s.split("?")[0] for s in seen]
    assert paths == [
        "GET /boot.ipxe",
        "GET /ipxe",
        "GET /assets/debian-12/vmlinuz",
        "GET /assets/debian-12/initrd.gz",
        "GET /assets/firmware.cpio.gz",
        "GET /boot/tok-7f3a9c/metadata.json",
        "POST /boot/tok-7f3a9c/done",
    ]
    assert "mac=52-54-00-aa-cc-01" in seen[1]  # the bootstrap's ${netX/mac:hexhyp}
    assert trace.retries == 0 and len(trace.decision_latencies) == 1


def test_the_decision_scripts_download_retries_are_followed() -> None:
    routes = _decision_routes((GOLDEN / "linux_static_token.ipxe").read_text())
    routes["/assets/debian-12/vmlinuz"] = _status(404, _ok, times=2)
    trace, seen = asyncio.run(_run(routes, first="/ipxe"))
    assert trace.outcome == Outcome.COMPLETED, trace
    assert sum("vmlinuz" in s for s in seen) == 3
    assert trace.errors["http 404 on download"] == 2


def test_a_kernel_that_never_comes_falls_through_to_local_disk() -> None:
    routes = _decision_routes((GOLDEN / "linux_static_token.ipxe").read_text())
    routes["/assets/debian-12/vmlinuz"] = _status(404)
    trace, seen = asyncio.run(_run(routes, first="/ipxe"))
    assert trace.outcome == Outcome.FELL_THROUGH
    assert sum("vmlinuz" in s for s in seen) == 3  # the script's three tries, no more
    assert trace.messages[-1] == "bootbrain: booting from local disk"


def test_the_bootstrap_retries_a_brain_that_failed_then_boots() -> None:
    golden = (GOLDEN / "linux_static_token.ipxe").read_text()
    routes = {"/boot.ipxe": _bootstrap(2), **_decision_routes(golden)}
    routes["/ipxe"] = _status(502, _script(golden), times=1)
    trace, seen = asyncio.run(_run(routes))
    assert trace.outcome == Outcome.COMPLETED, trace
    assert sum(s.startswith("GET /ipxe") for s in seen) == 2
    assert trace.retries == 1


def test_a_brain_that_never_answers_exhausts_the_bootstrap_then_falls_through() -> None:
    trace, seen = asyncio.run(_run({"/boot.ipxe": _bootstrap(1), "/ipxe": _status(503)}))
    assert trace.outcome == Outcome.FELL_THROUGH
    assert sum(s.startswith("GET /ipxe") for s in seen) == 2  # one try, one retry
    assert trace.messages[-1] == "bootbrain: no answer, booting from local disk"


def test_a_shed_boot_chains_back_to_the_bootstrap() -> None:
    golden = (GOLDEN / "linux_static_token.ipxe").read_text()
    shed = render_error("boot server busy", 1)
    routes = {"/boot.ipxe": _bootstrap(1), **_decision_routes(golden)}
    calls = 0

    async def busy_once(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(text=shed)
        return web.Response(text=golden.replace("http://10.0.0.1:8080", f"http://{request.host}"))

    routes["/ipxe"] = busy_once
    trace, seen = asyncio.run(_run(routes))
    assert trace.outcome == Outcome.COMPLETED, trace
    assert [s.split("?")[0] for s in seen][:4] == [
        "GET /boot.ipxe",
        "GET /ipxe",
        "GET /boot.ipxe",
        "GET /ipxe",
    ]


def test_a_menu_times_out_to_its_default() -> None:
    golden = (GOLDEN / "menu.ipxe").read_text().replace("--timeout 10000", "--timeout 50")
    trace, seen = asyncio.run(_run(_decision_routes(golden), first="/ipxe"))
    assert trace.outcome == Outcome.COMPLETED, trace
    assert any("debian-12/vmlinuz" in s for s in seen)


@pytest.mark.parametrize("command", ["imgverify x y", "shell"])
def test_a_command_it_does_not_know_is_reported_not_skipped(command: str) -> None:
    routes = {"/ipxe": _script(f"#!ipxe\n{command}\nexit\n")}
    trace, _ = asyncio.run(_run(routes, first="/ipxe"))
    assert trace.outcome == Outcome.ERROR
    assert trace.errors["unsupported"] == 1
