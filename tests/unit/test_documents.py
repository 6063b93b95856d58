"""The booted OS's documents (pure): SSH keys, the merge, template checks, the
cloud-init files and the JSON document."""

from __future__ import annotations

import base64

import pytest
import yaml

from bootbrain.boot import documents as d
from bootbrain.boot.types import ConfigSource, MachineView, OsConfig, RenderContext, StaticNet
from bootbrain.boot.variables import template_variables

# Real keys (ssh-keygen); the RSA one is 3072 bits, the weak one 1024.
ED = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILECq7UJQziflFu8NnMB20StsbRgcX3/pzf/Ivj3cQLc alice@example"
)
ED2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK4BOSGKvTuCCImIW2B0EcEAxTZkohsfM1lcs9PyffNm bob@example"
EC = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAEoMphwZbIKbyVQ95t9"
    "WLk6MxSGehOLq+L+EJ84ySiO/rnxE97W1kwORccjInuBhpO3Do2cm2E+xJsH46nkd1w= dave"
)
RSA = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC/EoqnfgWrc7AxX7u3RoW3V05LpE6Wz6REzhIe8kLbVgk6VGqHQen8"
    "ZroJBPlqfXf3SHiS7ClG5d6Lfw0uvP9J+m8ZKx6YMy+D7ioOCGcnjJE6Q5hOM1l/2LocpcmdwsRXfDmue0VwSCQ0fbfP"
    "6DM3fx9kTMPFCv6jM/zE1NWB8oPaD8y0jRCm1NGD1Hf3Mud9xT2KpZtIzkiYq1ovmtN+VZdvsQcmPgh02P/x4Vz+CatP"
    "Z89xKqmObKD97XlXcKwlR4AbbZVn0IfImNn1s5LNqUb06XsD1X52YBdyO+rk9K8fFP7AD1H4itiLUyL+c16dq9grpXk9"
    "aST7VMWgSHW79Q363bU/ib3BV51HR7iEmh4rs08LDU7aNhrxzE4IsjVi3k3OXrsYh/ZiLYfX1QxJFjKL3A846n79J+yf"
    "9zbxqoxDiHxmqw9la9AcwIarGntaUr272THPt1aJki0uEJzucKnCFQ4JWfbo+80NEfUu6LC0fjOg9ufpiwdcTNtA31E="
    " carol"
)
RSA_1024 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDDZEnJgMfsFgjEgKW0GW5xiSQfkYasmhZc0EeNcLWAF/F3URiPk2pm"
    "cuH7KjYor1/aSM51Ukrp4uufXb1FDIL0Pjem9YM+geoRjz+WwmNT8JRadp5oxocKGluMmJ98iOZWhQbHKH+mi3UVOfLk"
    "6GC+Rvrdlbn//NiWkVjKev/F6w== weak"
)

CTX = RenderContext(
    base_url="http://bb.test",
    assets_url="http://bb.test/assets",
    boot_id="b1",
    done_url="http://bb.test/boot/TOKEN/done",
    metadata_url="http://bb.test/boot/TOKEN/",
)
STATIC = StaticNet(
    ip="10.200.0.50",
    prefix=24,
    netmask="255.255.255.0",
    gateway="10.200.0.1",
    dns=("10.200.0.2", "10.200.0.3"),
    domain="lab.example",
    hostname="node-var",
    interface="eth0",
)


def machine(static: StaticNet | None = STATIC, hostname: str | None = "node-var") -> MachineView:
    return MachineView(
        id=7,
        hostname=hostname,
        state="ready",
        tags=("gpu",),
        uuid=None,
        serial="SN",
        manufacturer="Vendor",
        product="Box",
        asset_tag=None,
        profile=None,
        next_boot=None,
        static=static,
        macs=("52:54:00:aa:cc:01",),
    )


def source(
    mc: OsConfig | None = None,
    pc: OsConfig | None = None,
    m: MachineView | None = None,
    mac: str | None = "52:54:00:aa:cc:01",
) -> ConfigSource:
    return ConfigSource(
        machine=machine() if m is None else m,
        machine_config=mc or OsConfig(),
        profile_name="inst",
        profile_config=pc,
        interface="eth0",
        mac=mac,
    )


# --- SSH keys ------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ED, ED2, EC, RSA])
def test_real_keys_are_accepted_as_they_are(key: str) -> None:
    assert d.canonical_ssh_key(key) == key


def test_key_whitespace_is_normalised_and_the_comment_kept() -> None:
    kind, blob, comment = ED.split()
    assert d.canonical_ssh_key(f"  {kind}\t{blob}   {comment} laptop ") == (
        f"{kind} {blob} {comment} laptop"
    )
    assert d.canonical_ssh_key(f"{kind} {blob}") == f"{kind} {blob}"


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (ED + "\n" + ED2, "one key per entry"),
        (ED.replace(" alice", "\ralice"), "one key per entry"),
        ('from="10.0.0.0/8" ' + ED, "options are not accepted"),
        ("no-pty,no-agent-forwarding " + ED, "options are not accepted"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAK9", "DSA keys are not accepted"),
        ("ssh-foo AAAA", "unknown key type"),
        ("ssh-ed25519", "expected '<type> <base64 key>"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("ssh-rsa " + ED.split()[1], "not a ssh-rsa public key"),  # type says rsa, blob ed25519
        (RSA_1024, "shorter than 2048 bits"),
        ("x" * 9000, "longer than"),
    ],
)
def test_bad_keys_are_refused_with_a_reason(key: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        d.canonical_ssh_key(key)


def test_truncated_and_padded_blobs_are_refused() -> None:
    blob = base64.b64decode(ED.split()[1])
    for bad in (blob[:-1], blob + b"\x00", blob[:3]):
        with pytest.raises(ValueError, match=r"not a ssh-ed25519 public key|32 bytes"):
            d.canonical_ssh_key("ssh-ed25519 " + base64.b64encode(bad).decode())


# --- metadata values ---------------------------------------------------------------------


def test_metadata_must_be_small_plain_json() -> None:
    value = {"a": [1, 2.5, None, {"b": True}]}
    assert d.check_metadata(value) == value
    with pytest.raises(ValueError, match="larger than"):
        d.check_metadata({"big": "x" * (d.MAX_METADATA_BYTES + 1)})
    with pytest.raises(ValueError, match="NUL"):
        d.check_metadata({"k": "a\x00b"})
    with pytest.raises(ValueError, match="plain JSON"):
        d.check_metadata({"k": float("nan")})
    deep: dict[str, object] = {}
    node = deep
    for _ in range(d.MAX_METADATA_DEPTH + 1):
        node["n"] = {}
        node = node["n"]  # type: ignore[assignment]
    with pytest.raises(ValueError, match="nested deeper"):
        d.check_metadata(deep)


def test_document_text_refuses_control_characters_and_cr() -> None:
    assert d.check_document_text("#!/bin/sh\n\techo hi\n") == "#!/bin/sh\n\techo hi\n"
    with pytest.raises(ValueError, match="line 1: control character CR"):
        d.check_document_text("#cloud-config\r\nhostname: x\r\n")
    with pytest.raises(ValueError, match="line 1"):
        d.check_document_text("#cloud-config\x00")


# --- the merge ------------------------------------------------------------------------------


def test_merge_rules() -> None:
    profile = OsConfig(
        ssh_keys=(ED, EC),
        tags=("os:debian", "gpu"),
        metadata={"site": "ams", "ntp": {"servers": ["a"], "pool": True}, "drop": 1, "l": [1, 2]},
        user_data="#cloud-config\n{}\n",
        vendor_data="#cloud-config\nvendor: 1\n",
    )
    mine = OsConfig(
        ssh_keys=(ED.replace("alice@example", "alice@laptop"), ED2),
        tags=("gpu", "rack1"),
        metadata={"ntp": {"servers": ["b"]}, "drop": None, "l": [3], "new": {"x": 1}},
        user_data="",
        vendor_data=None,
    )
    merged = d.merge(profile, mine)
    # keys: profile first, then the machine's; same key material not repeated
    assert merged.ssh_keys == (ED, EC, ED2)
    assert merged.tags == ("gpu", "os:debian", "rack1")
    # RFC 7396: objects merge, other values replace, null removes
    assert merged.metadata == {
        "site": "ams",
        "ntp": {"servers": ["b"], "pool": True},
        "l": [3],
        "new": {"x": 1},
    }
    assert merged.user_data == ""  # the machine's "" means none, not the profile's
    assert merged.vendor_data == "#cloud-config\nvendor: 1\n"  # None: the profile's
    assert profile.metadata["drop"] == 1  # nothing modified in place


def test_merge_without_profile_or_machine() -> None:
    assert d.merge(None, None) == OsConfig()
    only = OsConfig(ssh_keys=(ED,), metadata={"a": None})
    assert d.merge(None, only).metadata == {}
    assert d.merge(only, None).ssh_keys == (ED,)


# --- template checks at save time -------------------------------------------------------------


def test_valid_cloud_config_template_passes() -> None:
    d.validate_config(
        OsConfig(
            ssh_keys=(ED,),
            metadata={"ntp": ["a", "b"]},
            user_data=(
                "#cloud-config\nhostname: {{ hostname }}\nfqdn: {{ fqdn }}\n"
                "ntp:\n  servers: {{ metadata.ntp | tojson }}\n"
                "{% if ssh_keys %}ssh_authorized_keys: {{ ssh_keys | list | tojson }}{% endif %}\n"
            ),
            vendor_data="#!/bin/sh\necho {{ instance_id }}\n",
        )
    )


@pytest.mark.parametrize(
    ("template", "line", "message"),
    [
        ("#cloud-config\nhostname: {{ hostname\n", 2, "unexpected"),
        ("#cloud-config\na: 1\nb: {{ nosuchvar }}\n", 3, "nosuchvar"),
        ("#cloud-config\na: 1\nb: {{ metadata.missing }}\n", 3, "missing"),
        ("#cloud-config\na: [1, 2\nb: 3\n", 3, "not valid YAML"),
        ("#cloud-config\n- a\n- b\n", None, "YAML mapping"),
        ("hostname: x\n", 1, "must start with #cloud-config"),
        ("#cloud-config\nserial: {{ machine.serial }}\n", 2, "never written"),
    ],
)
def test_bad_templates_are_refused_with_the_line(
    template: str, line: int | None, message: str
) -> None:
    with pytest.raises(d.DocumentError) as e:
        d.validate_config(OsConfig(user_data=template))
    assert e.value.field == "user_data"
    assert e.value.line == line
    assert message in e.value.message


def test_other_user_data_formats_pass_without_a_yaml_check() -> None:
    for text in (
        "#!/bin/bash\necho {{ hostname }}\n",
        "#cloud-boothook\n#!/bin/sh\ntrue\n",
        "#include\nhttp://example.org/a\n",
        "## template: jinja\n#cloud-config\n"
        "{% raw %}hostname: {{ v1.local_hostname }}{% endraw %}\n",
        "Content-Type: multipart/mixed; boundary=x\n\n--x--\n",
        "#cloud-config-archive\n- type: text/cloud-config\n  content: '{}'\n",
        "",
    ):
        d.validate_config(OsConfig(vendor_data=text))
    with pytest.raises(d.DocumentError, match="YAML list"):
        d.validate_config(OsConfig(vendor_data="#cloud-config-archive\na: 1\n"))


def test_a_machine_value_that_breaks_its_profiles_template_is_named() -> None:
    profile = OsConfig(
        metadata={"ntp": "a"}, user_data="#cloud-config\nntp: {{ metadata.ntp | tojson }}\n"
    )
    d.validate_config(OsConfig(), profile)
    with pytest.raises(d.DocumentError) as e:
        d.validate_config(OsConfig(metadata={"ntp": None}), profile)
    assert e.value.field == "profile.user_data"
    assert "with this machine's values" in e.value.message


# --- the documents ---------------------------------------------------------------------------


def test_meta_data_starts_with_the_instance_id() -> None:
    p = d.prepare(source(OsConfig(ssh_keys=(ED,))), "b1", CTX)
    text = d.meta_data(p)
    assert text.splitlines()[0] == "instance-id: bootbrain-machine-7"
    assert yaml.safe_load(text) == {
        "instance-id": "bootbrain-machine-7",
        "local-hostname": "node-var.lab.example",
        "public-keys": [ED],
    }
    assert ED in text  # one key, one line


def test_meta_data_of_a_boot_without_machine_uses_the_boot_id() -> None:
    src = ConfigSource(machine=None, machine_config=None, profile_name="d", profile_config=None)
    p = d.prepare(src, "b1", CTX)
    assert yaml.safe_load(d.meta_data(p)) == {"instance-id": "bootbrain-boot-b1"}
    assert d.metadata_document(p)["machine_id"] is None


def test_user_data_renders_with_the_boot_values() -> None:
    cfg = OsConfig(
        tags=("gpu",),
        metadata={"role": "db"},
        user_data=(
            "#cloud-config\nhostname: {{ hostname }}\nphone_home:\n  url: {{ done_url }}\n"
            "write_files:\n- path: /etc/role\n  content: {{ metadata.role }}\n"
            "- path: /etc/ip\n"
            "  content: {{ ip }}/{{ prefix }} {{ profile }} {{ tags | join(',') }}\n"
        ),
    )
    text = d.user_data(d.prepare(source(cfg), "b1", CTX))
    loaded = yaml.safe_load(text)
    assert loaded["phone_home"]["url"] == "http://bb.test/boot/TOKEN/done"
    assert loaded["write_files"][0]["content"] == "db"
    assert loaded["write_files"][1]["content"] == "10.200.0.50/24 inst gpu"
    assert d.vendor_data(d.prepare(source(cfg), "b1", CTX)) == ""


def test_network_config_matches_ip_config() -> None:
    p = d.prepare(source(), "b1", CTX)
    net = yaml.safe_load(d.network_config_text(p))
    assert net == {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": "52:54:00:aa:cc:01"},
                "set-name": "eth0",
                "addresses": ["10.200.0.50/24"],
                "routes": [{"to": "0.0.0.0/0", "via": "10.200.0.1"}],
                "nameservers": {
                    "addresses": ["10.200.0.2", "10.200.0.3"],
                    "search": ["lab.example"],
                },
            }
        },
    }
    # the same values as the iPXE variable, field by field
    ip_config = template_variables(machine(), CTX)["ip_config"]
    ip, _, gw, mask, host, iface, _, dns0, dns1 = ip_config.removeprefix("ip=").split(":")
    eth = net["ethernets"][iface]
    assert eth["addresses"] == [f"{ip}/24"] and mask == "255.255.255.0"
    assert eth["routes"][0]["via"] == gw
    assert eth["nameservers"]["addresses"] == [dns0, dns1]
    assert d.metadata_document(p)["network"]["ip_config"] == ip_config
    assert host == d.metadata_document(p)["hostname"]


def test_network_config_without_gateway_dns_or_mac() -> None:
    bare = StaticNet("10.0.0.5", 16, "255.255.0.0", None, (), None, "h", "ens3")
    src = ConfigSource(
        machine=machine(bare),
        machine_config=None,
        profile_name=None,
        profile_config=None,
        interface="ens3",
        mac=None,
    )
    net = yaml.safe_load(d.network_config_text(d.prepare(src, "b1", CTX)))
    assert net == {"version": 2, "ethernets": {"ens3": {"addresses": ["10.0.0.5/16"]}}}


def test_network_config_without_static_assignment_is_dhcp_on_the_boot_nic() -> None:
    p = d.prepare(source(m=machine(static=None)), "b1", CTX)
    net = yaml.safe_load(d.network_config_text(p))
    assert net == {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": "52:54:00:aa:cc:01"},
                "set-name": "eth0",
                "dhcp4": True,
            }
        },
    }
    assert d.metadata_document(p)["network"] == {
        "interface": "eth0",
        "mac": "52:54:00:aa:cc:01",
        "dhcp": True,
    }


def test_json_document() -> None:
    cfg = OsConfig(ssh_keys=(ED,), tags=("x",), metadata={"a": 1})
    doc = d.metadata_document(d.prepare(source(cfg, OsConfig(tags=("os:debian",))), "b1", CTX))
    assert doc["instance_id"] == "bootbrain-machine-7"
    assert doc["boot_id"] == "b1"
    assert doc["machine_id"] == 7
    assert (doc["hostname"], doc["fqdn"]) == ("node-var", "node-var.lab.example")
    assert doc["profile"] == "inst"
    assert doc["ssh_keys"] == [ED]
    assert doc["tags"] == ["os:debian", "x"]
    assert doc["metadata"] == {"a": 1}
    assert doc["urls"]["meta-data"] == "http://bb.test/boot/TOKEN/meta-data"
    assert doc["urls"]["done"] == "http://bb.test/boot/TOKEN/done"


def test_a_template_failing_for_this_machine_names_its_origin() -> None:
    profile = OsConfig(user_data="#cloud-config\na: {{ metadata.x }}\n")
    with pytest.raises(d.DocumentError) as e:
        d.user_data(d.prepare(source(OsConfig(), profile), "b1", CTX))
    assert e.value.field == "profile.user_data"
    assert e.value.line == 2
