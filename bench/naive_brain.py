"""The naive reference brain: the same answers as bootbrain, from a Python dict.

Benchmarks run it beside bootbrain, in the same run and under the same gunicorn,
to read bootbrain's figures as ratios: what a boot costs when the "decision" is a
dict lookup and nothing is recorded. It loads every machine with a NIC from the
benchmark's database once at start, answers ``/boot.ipxe`` (one chain, the same
retry schedule), ``/ipxe`` (the static network variables, a stateless HMAC token,
kernel and initrd with retries), the metadata document and the completion call.

    BENCH_DATABASE_URL=sqlite:///… BENCH_PUBLIC_URL=http://127.0.0.1:8080 \\
        gunicorn -w 1 'bench.naive_brain:create_app()'

Not a product: no identity checks beyond the MAC, no events, no one-shot actions.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass

from flask import Flask, Response, request
from sqlalchemy import create_engine, text

KEY = b"naive-reference"
DELAYS = (2, 6, 16, 32, 38, 116)


@dataclass(frozen=True)
class Node:
    hostname: str
    address: str
    netmask: str
    prefix: int
    gateway: str
    dns: str


def _load(url: str) -> dict[str, Node]:
    engine = create_engine(url)
    nodes: dict[str, Node] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT nic.mac, machine.hostname, machine.address, network.cidr, "
                "network.gateway FROM nic JOIN machine ON machine.id = nic.machine_id "
                "JOIN network ON network.id = machine.network_id WHERE nic.boot"
            )
        )
        for mac, hostname, address, cidr, gateway in rows:
            net = ipaddress.ip_network(cidr)
            nodes[mac] = Node(
                hostname, address, str(net.netmask), net.prefixlen, gateway, "10.0.0.2"
            )
    engine.dispose()
    return nodes


def _token(mac: str) -> str:
    return mac.replace(":", "") + hmac.new(KEY, mac.encode(), hashlib.sha256).hexdigest()[:32]


def _check(token: str) -> str | None:
    mac = ":".join(token[i : i + 2] for i in range(0, 12, 2))
    return mac if hmac.compare_digest(_token(mac), token) else None


def _script(body: str) -> Response:
    return Response(body, mimetype="text/plain")


def create_app() -> Flask:
    nodes = _load(os.environ["BENCH_DATABASE_URL"])
    base = os.environ["BENCH_PUBLIC_URL"].rstrip("/")
    assets = os.environ.get("BENCH_ASSETS_URL", base + "/assets")
    app = Flask(__name__)

    @app.get("/boot.ipxe")
    def bootstrap() -> Response:
        url = (
            f"{base}/ipxe?uuid=${{uuid}}&mac=${{netX/mac:hexhyp}}&serial=${{serial:hexraw}}"
            "&buildarch=${buildarch}&platform=${platform}"
        )
        lines = ["#!ipxe", f"set bootbrain-url {url}"]
        for n, delay in enumerate(DELAYS, 1):
            lines.append(f"chain --replace --autofree ${{bootbrain-url}} || echo retry {n}")
            lines.append(f"sleep {delay}")
        lines += ["chain --replace --autofree ${bootbrain-url} || echo giving up", "exit", ""]
        return _script("\n".join(lines))

    @app.get("/ipxe")
    def decide() -> Response:
        mac = request.args.get("mac", "").replace("-", ":").lower()
        node = nodes.get(mac)
        if node is None:
            return _script("#!ipxe\necho unknown machine\nexit\n")
        token = _token(mac)
        ip = (
            f"ip={node.address}::{node.gateway}:{node.netmask}:{node.hostname}:eth0:none:{node.dns}"
        )
        lines = ["#!ipxe", f"set IPXE_BOOT_LINUX_IP_CONFIG {ip}"]
        lines.append(f"set IPXE_BOOT_DONE_URL {base}/boot/{token}/done")
        lines.append(f"set IPXE_BOOT_METADATA_URL {base}/boot/{token}/")
        for label, command in (
            ("k", f"kernel --name vmlinuz {assets}/vmlinuz initrd=initrd.img {ip}"),
            ("i", f"initrd --name initrd.img {assets}/initrd.img"),
        ):
            lines += [
                "set try:int32 0",
                f":{label}",
                f"{command} || goto {label}_retry",
                f"goto {label}_ok",
                f":{label}_retry",
                "inc try",
                "iseq ${try} 3 && goto fallback || sleep ${try}",
                f"goto {label}",
                f":{label}_ok",
            ]
        lines += ["boot || goto fallback", ":fallback", "exit", ""]
        return _script("\n".join(lines))

    @app.get("/boot/<token>/metadata.json")
    def metadata(token: str) -> Response:
        mac = _check(token)
        if mac is None:
            return Response("forbidden\n", status=403)
        return Response(json.dumps({"hostname": nodes[mac].hostname}), mimetype="application/json")

    @app.post("/boot/<token>/done")
    def done(token: str) -> Response:
        if _check(token) is None:
            return Response("forbidden\n", status=403)
        return Response("ok\n", mimetype="text/plain")

    return app
