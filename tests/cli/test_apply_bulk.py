"""``bootbrain apply`` at scale: new machines are written together and the inventory
is read as rows (:mod:`bootbrain.inventory.bulk`), which must change nothing anyone
sees: the same machines, events and problems as the row-by-row path of ``import``,
the same bodies as the API's; and the progress bar shows on a terminal only.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from bootbrain import schemas
from bootbrain.db import Database
from bootbrain.inventory import bulk
from bootbrain.models import Event, Machine
from tests.cli.conftest import Cli, MakeCli
from tests.cli.test_catalog import ed25519_key
from tests.cli.test_transfer import build_inventory, problems, shown

MIXED = """\
networks:
  - {name: rack1, cidr: 10.20.0.0/24, gateway: 10.20.0.1}
profiles:
  - name: disk
    kind: local
    metadata: {ntp: ntp1.example.net}
    user_data: "#cloud-config\\nntp: {{ metadata.ntp }}\\n"
machines:
  - hostname: node-01
    uuid: 4C4C4544-0042-3610-8052-B4C04F4E3232
    serial: SN-1
    manufacturer: Dell Inc.
    nics: [{mac: "52-54-00-AA-CC-01", name: eno1}, {mac: "52:54:00:aa:cc:02"}]
    network: rack1
    address: 10.20.0.50
    profile: disk
    tags: [b, a, b]
    metadata: {ntp: ntp2.example.net}
  - nics: [{mac: "52:54:00:aa:cc:03", boot: true}]
    state: ready
    notes: only a MAC
    ssh_keys: ["{key}"]
  - serial: ONLY-SERIAL
    user_data: ""
""".replace("{key}", ed25519_key("ops@example"))


def _db(cli: Cli) -> Database:
    return Database(cli.settings().database_url)


def _change_events(cli: Cli) -> list[tuple[str, list[str]]]:
    """Each machine's ``change`` events, ids written as its hostname, MAC or serial."""
    db = _db(cli)
    try:
        with db.read() as s:
            names = {
                m.id: m.hostname or (m.nics[0].mac if m.nics else m.serial)
                for m in s.scalars(select(Machine)).unique()
            }
            return sorted(
                (
                    re.sub(r"machine \d+", f"machine {names[e.machine_id]}", e.message),
                    e.data["fields"],
                )
                for e in s.scalars(select(Event).where(Event.kind == "change"))
                if e.machine_id is not None
            )
    finally:
        db.dispose()


def test_apply_writes_what_an_import_row_by_row_writes(make_cli: MakeCli) -> None:
    rows = make_cli("rows")
    path = rows.home / "inventory.yaml"
    path.write_text(MIXED)
    rows.run("import", str(path))
    expected, events = shown(rows), _change_events(rows)

    together = make_cli("together", fresh=True)
    out = together.run("apply", str(path)).stdout
    assert out.endswith("applied: 5 created, 0 changed, 0 deleted\n")
    assert shown(together) == expected
    # One event per machine, saying the same (the fields an import lists are the file's).
    assert [m for m, _ in _change_events(together)] == [m for m, _ in events]
    assert together.run("apply", str(path)).stdout == "no changes\n"


def test_the_inventory_read_as_rows_is_what_the_api_shows(runner: Cli) -> None:
    """Every machine field the create body has, read in bulk, as ``MachineOut`` has it."""
    build_inventory(runner)
    db = _db(runner)
    try:
        with db.read() as s:
            docs = bulk.machine_docs(s)
            machines = s.scalars(select(Machine).order_by(Machine.id)).unique().all()
            keep = set(schemas.MachineCreate.model_fields)
            assert [d for _, _, d in docs] == [
                schemas.MachineOut.of(m, reveal=True).model_dump(include=keep) for m in machines
            ]
            assert [(i, v) for i, v, _ in docs] == [(m.id, m.version) for m in machines]
    finally:
        db.dispose()
    assert len(docs) >= 3


def test_a_bad_template_is_reported_on_every_row_that_has_it(runner: Cli) -> None:
    """Rows with the same configuration are checked once, and reported each."""
    bad = '    user_data: "#cloud-config\\nx: {{ nope( }}\\n"\n'
    text = (
        "machines:\n"
        '  - {hostname: a, nics: [{mac: "52:54:00:00:00:01"}]}\n'
        + "  - hostname: b\n"
        + bad
        + "  - hostname: c\n"
        + bad
    )
    path = runner.home / "inventory.yaml"
    path.write_text(text)
    err = runner.fails("apply", str(path))
    assert problems(err, path) == [(3, "user_data"), (5, "user_data")]
    assert runner.machines() == []


def _many(count: int) -> str:
    return "machines:\n" + "".join(
        f'  - {{hostname: n{i}, nics: [{{mac: "52:54:00:01:{i >> 8:02x}:{i & 255:02x}"}}]}}\n'
        for i in range(count)
    )


def _apply(cli: Cli, path: Path, stderr_tty: bool) -> tuple[str, bytes]:
    """``bootbrain apply`` as a process, its stderr a terminal or a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTBRAIN_")}
    env.update(BOOTBRAIN_CONFIG=str(cli.config_file), COLUMNS="100", TERM="xterm")
    command = [str(Path(sys.executable).parent / "bootbrain"), "apply", str(path)]
    if not stderr_tty:
        done = subprocess.run(command, env=env, capture_output=True, check=True, timeout=600)
        return done.stdout.decode(), done.stderr
    main, child = pty.openpty()
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=child) as proc:
        os.close(child)
        seen = bytearray()
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        assert proc.wait(timeout=600) == 0
    os.close(main)
    return stdout, bytes(seen)


def test_a_large_apply_shows_its_progress_on_a_terminal_only(make_cli: MakeCli) -> None:
    piped = make_cli("piped")
    path = piped.home / "inventory.yaml"
    path.write_text(_many(600))
    out, err = _apply(piped, path, stderr_tty=False)
    assert out.endswith("applied: 600 created, 0 changed, 0 deleted\n")
    assert err == b""

    terminal = make_cli("terminal", fresh=True)
    out, err = _apply(terminal, path, stderr_tty=True)
    assert out.endswith("applied: 600 created, 0 changed, 0 deleted\n")
    assert b"writing machines" in err
    assert b"600 created" not in err  # the plan is stdout's, the bar stderr's
