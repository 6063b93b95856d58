"""Real BMC emulators on loopback, one per test: OpenIPMI's ``ipmi_sim`` with a
chassis-control program that keeps the "hardware" in files, and sushy-tools' Redfish
emulator with a static systems driver (tests/bmc/static_redfish.py)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests

from tests.cli.conftest import (  # noqa: F401 - the CLI suite's fixtures, for test_cli
    _close_what_the_cli_left_open,
    database,
    make_cli,
    runner,
)
from tests.ports import free_port

HERE = Path(__file__).parent
USER, PASSWORD = "admin", "Bmc-s3cret-pw"

CHASSIS = """#!/bin/sh
dir=$(dirname "$0"); shift; op=$1; shift
if [ "$op" = get ]; then
  for item in "$@"; do
    case $item in
      power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)";;
      boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)";;
    esac
  done
  exit 0
fi
while [ $# -ge 2 ]; do
  case $1 in power) echo "$2" > "$dir/power";; boot) echo "$2" > "$dir/boot";; esac
  echo "$1 $2" >> "$dir/actions"; shift 2
done
"""


@dataclass
class IpmiSim:
    port: int
    dir: Path

    def actions(self) -> list[str]:
        f = self.dir / "actions"
        return f.read_text().splitlines() if f.exists() else []

    def power(self) -> str:
        f = self.dir / "power"
        return "on" if f.exists() and f.read_text().strip() == "1" else "off"

    def boot(self) -> str:
        f = self.dir / "boot"
        return f.read_text().strip() if f.exists() else "default"

    def busy(self) -> list[tuple[float, float]]:
        """When the chassis was busy with each set (BMC-side clock)."""
        f = self.dir / "times"
        words = f.read_text().split() if f.exists() else []
        starts = [float(t) for w, t in zip(words[::2], words[1::2], strict=True) if w == "start"]
        ends = [float(t) for w, t in zip(words[::2], words[1::2], strict=True) if w == "end"]
        return list(zip(starts, ends, strict=False))  # a refused set has no end


def _free_udp_port(taken: set[int]) -> int:
    """A port free for UDP (ipmi_sim's) too, and not one of ``taken``."""
    while True:
        port = free_port()
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def _start_ipmi_sim(
    d: Path, delay: float = 0.0, taken: set[int] | None = None
) -> tuple[subprocess.Popen[bytes], IpmiSim]:
    """One ipmi_sim in ``d``; its chassis program takes ``delay`` seconds for each set
    (a BMC that is slow to act) and logs each set's start and end time (BMC-side)."""
    (d / "state").mkdir(parents=True)
    prog = d / "chassis.sh"
    timed = (
        f'[ "$2" = set ] && echo "start $(date +%s.%N)" >> "$(dirname "$0")/times"\n'
        f'[ "$2" = set ] && sleep {delay}\n'
        if delay
        else ""
    )
    prog.write_text(CHASSIS.replace("#!/bin/sh\n", "#!/bin/sh\n" + timed, 1) + (
        'echo "end $(date +%s.%N)" >> "$dir/times"\n' if delay else ""
    ))
    prog.chmod(0o755)
    port = _free_udp_port(taken or set())
    (d / "lan.conf").write_text(
        f"""name "bootbrain-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{prog} 0x20"
  user 2 true "{USER}" "{PASSWORD}" admin 10 none md2 md5 straight
"""
    )
    (d / "bmc.emu").write_text(
        "mc_setbmc 0x20\n"
        "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
        "mc_enable 0x20\n"
    )
    proc = subprocess.Popen(
        ["ipmi_sim", "-c", "lan.conf", "-f", "bmc.emu", "-s", "state", "-n"],
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return proc, IpmiSim(port, d)


@pytest.fixture
def ipmi_sim(tmp_path: Path) -> Iterator[IpmiSim]:
    if not shutil.which("ipmi_sim"):
        pytest.skip("ipmi_sim (Debian openipmi) is not installed")
    proc, sim = _start_ipmi_sim(tmp_path / "ipmi")
    yield sim
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def ipmi_sims(tmp_path: Path) -> Iterator[Callable[[int, float], list[IpmiSim]]]:
    """``make(n, delay)``: n ipmi_sim BMCs, each its own process and port."""
    if not shutil.which("ipmi_sim"):
        pytest.skip("ipmi_sim (Debian openipmi) is not installed")
    procs: list[subprocess.Popen[bytes]] = []
    ports: set[int] = set()

    def make(n: int, delay: float) -> list[IpmiSim]:
        sims = []
        for i in range(n):
            proc, sim = _start_ipmi_sim(tmp_path / f"ipmi-{len(procs)}-{i}", delay, ports)
            procs.append(proc)
            sims.append(sim)
        return sims

    yield make
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)


@dataclass
class Redfish:
    url: str
    port: int
    system_id: str
    cert: Path | None

    def system(self) -> dict[str, object]:
        r = requests.get(
            f"{self.url}/redfish/v1/Systems/{self.system_id}",
            auth=(USER, PASSWORD),
            verify=str(self.cert) if self.cert else True,
            timeout=5,
        )
        out: dict[str, object] = r.json()
        return out


def _self_signed(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def _redfish(tmp_path: Path, tls: bool) -> Iterator[Redfish]:
    d = tmp_path / "redfish"
    d.mkdir()
    auth = d / "htpasswd"
    auth.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    uuid = "27946b59-9e44-4fa7-8e91-f3527a1ef094"
    systems = [{"uuid": uuid, "name": "node-1", "power_state": "Off", "nics": []}]
    (d / "emulator.conf").write_text(
        f"SUSHY_EMULATOR_AUTH_FILE = {str(auth)!r}\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {json.dumps(systems)}\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(d / 'state')!r}\n"
    )
    port = free_port()
    args = [sys.executable, str(HERE / "static_redfish.py"), "--config", str(d / "emulator.conf"),
            "-i", "127.0.0.1", "-p", str(port)]
    cert = None
    if tls:
        cert, key = _self_signed(d)
        args += ["--ssl-certificate", str(cert), "--ssl-key", str(key)]
    log = (d / "emulator.log").open("w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError((d / "emulator.log").read_text()) from None
            time.sleep(0.2)
    yield Redfish(url, port, uuid, cert)
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def redfish(tmp_path: Path) -> Iterator[Redfish]:
    yield from _redfish(tmp_path, tls=False)


@pytest.fixture
def redfish_tls(tmp_path: Path) -> Iterator[Redfish]:
    yield from _redfish(tmp_path, tls=True)
