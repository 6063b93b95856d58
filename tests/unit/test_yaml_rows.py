"""The two readers of an import's YAML give the same rows, lines included.

A plain file is built straight from libyaml's events; anything else goes through the
bounded composer, which refuses or reads it as it always has. Whichever reads a
file, an import must see the same rows on the same lines.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from bootbrain.inventory import transfer

PLAIN = [
    transfer.DEMO,
    "",
    "machines: []\n",
    "machines:\n  - foo\n  - [1]\n  - {a: 1}\nnetworks:\n  - {name: x}\n",
    "machines:\n  - {a: 1, a: 2}\n",
    "networks: [{name: '1'}]\nmachines: [{a: !!str 5, b: yes, c: ~, d: 0x10}]\n"
    "networks: [{name: b}]\n",
    "profiles:\n  - name: p\n    user_data: |\n      #cloud-config\n      a: 1\n",
]
UNUSUAL = [
    "---\n",
    "machines:\n  - {hostname: a, t: 2024-01-01}\n",
    "machines:\n  - &a {hostname: a}\n  - *a\n",
    "a: 1\n",
    "machines: {}\n",
    "- 1\n",
    "machines:\n  - {? [1]: 2}\n",
    "machines:\n  - {<<: {a: 1}, b: 2}\n",
    "machines: !!seq []\n",
    "machines:\n  - {a: 1\n",
    "machines: []\n---\nnetworks: []\n",
]


def _composed(text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(transfer, "_plain_rows", lambda text, progress: None)
        try:
            return list(transfer._yaml_rows(text))
        except (yaml.YAMLError, transfer.ImportRowsError) as e:
            return str(e)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
@pytest.mark.parametrize("text", PLAIN)
def test_a_plain_file_is_read_from_the_events_as_the_composer_reads_it(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = transfer._plain_rows(text, None)
    assert rows is not None
    assert rows == _composed(text, monkeypatch)


@pytest.mark.parametrize("text", UNUSUAL)
def test_anything_else_is_left_to_the_composer(text: str) -> None:
    assert transfer._plain_rows(text, None) is None
