"""Ignition configs checked as bootbrain checks them when a profile is saved
(:mod:`bootbrain.boot.ignition`): every refusal names where the config is wrong."""

from __future__ import annotations

import json

import pytest

from bootbrain.boot import documents, ignition
from bootbrain.boot.types import OsConfig
from bootbrain.errors import DocumentError

GOOD = {
    "ignition": {"version": "3.3.0"},
    "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA x"]}]},
    "storage": {
        "files": [{"path": "/etc/hostname", "mode": 420, "contents": {"source": "data:,a"}}]
    },
    "systemd": {"units": [{"name": "a.service", "enabled": True, "contents": "[Unit]\n"}]},
}


def _with(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"ignition": {"version": "3.3.0"}', "not JSON (line 1"),
        ("[]", "not an Ignition 3.x config: $: [] is not of type 'object'"),
        ("{}", "'ignition' is a required property"),
        (_with(ignition={"version": "2.3.0"}), "$.ignition.version: must be an Ignition spec 3.x"),
        (_with(ignition={"version": "3.3"}), "$.ignition.version: must be an Ignition spec 3.x"),
        (_with(ignition={}), "$.ignition: 'version' is a required property"),
        (_with(storag={}), "$: unknown key"),
        (
            _with(storage={"files": [{"path": "etc/hostname"}]}),
            "$.storage.files[0].path: must be an absolute path",
        ),
        (
            _with(storage={"files": {"path": "/a"}}),
            "$.storage.files: {'path': '/a'} is not of type",
        ),
        (_with(storage={"files": [{"path": "/a", "mode": "0644"}]}), "$.storage.files[0].mode"),
        (_with(systemd={"units": [{"enabled": True}]}), "$.systemd.units[0]: 'name' is a required"),
        (
            _with(passwd={"users": [{"name": "core", "sshAuthorizedKeys": "k"}]}),
            "sshAuthorizedKeys",
        ),
        ('{"ignition": {"version": "3.3.0"}, "ignition": {"version": "3.3.0"}}', "appears twice"),
    ],
)
def test_configs_that_are_not_ignition_3_are_refused(text: str, expected: str) -> None:
    with pytest.raises(DocumentError) as e:
        ignition.check_config("ignition", text)
    assert e.value.field == "ignition"
    assert expected in e.value.message


@pytest.mark.parametrize("version", ["3.0.0", "3.3.0", "3.4.0-experimental", "3.5.0"])
def test_spec_3_configs_pass(version: str) -> None:
    loaded = ignition.check_config("ignition", _with(ignition={"version": version}))
    assert loaded["ignition"]["version"] == version


def test_template_errors_name_the_line() -> None:
    source = '{\n  "ignition": {"version": "3.3.0"},\n  "x": {{ nope }}\n}\n'
    with pytest.raises(DocumentError) as e:
        documents.validate_config(OsConfig(ignition=source))
    assert (e.value.field, e.value.line) == ("ignition", 3)
    assert "nope" in e.value.message


def test_a_value_that_breaks_the_json_is_refused_not_served() -> None:
    """A value written without ``tojson`` that breaks the JSON fails the check (write
    values with ``tojson``, as the README says)."""
    source = (
        '{"ignition": {"version": "3.3.0"}, "passwd": {"users": [{"name": "{{ metadata.u }}"}]}}'
    )
    bad = OsConfig(ignition=source, metadata={"u": 'core"}], "storage": {"x": 1'})
    with pytest.raises(DocumentError) as e:
        documents.validate_config(bad)
    assert e.value.field == "ignition"


def test_a_machine_breaking_its_profiles_config_is_named() -> None:
    profile = OsConfig(
        ignition='{"ignition": {"version": "3.3.0"}, "x": {{ metadata.site | tojson }}}',
        metadata={"site": "ams"},
    )
    with pytest.raises(DocumentError) as e:
        documents.validate_config(OsConfig(metadata={"site": None}), profile)
    assert e.value.field == "profile.ignition"
    assert "with this machine's values" in e.value.message


def test_without_a_template_there_is_nothing_to_serve() -> None:
    with pytest.raises(ignition.MissingIgnitionError):
        ignition.render_ignition("profile.ignition", None, {})
