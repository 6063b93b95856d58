"""Typed settings: defaults < TOML file < ``BOOTBRAIN_*`` environment.

The TOML file is ``$BOOTBRAIN_CONFIG`` or ``/etc/bootbrain/bootbrain.toml``; nested
sections map to environment variables with ``__`` (``BOOTBRAIN_DNSMASQ__MODE=proxy``).
Tests build :class:`Settings` straight from a mapping, so neither the file nor the
environment leaks into them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bootbrain.errors import MissingSecretError
from bootbrain.security import private_dir
from bootbrain.vocabulary import BOOTFILE_RE, LocalMethod

DEFAULT_CONFIG_FILE = Path("/etc/bootbrain/bootbrain.toml")
_BOOTFILE = rf"^(?:{BOOTFILE_RE.pattern})$"
#: An http(s) URL without characters that would split a dnsmasq or Kea option.
_URL = r"^(https?://[A-Za-z0-9._~:/?\[\]@!$&()*+;=%-]{1,110})?$"


class DnsmasqSettings(BaseModel):
    """What ``bootbrain dnsmasq config`` renders and where reservations go."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["dhcp", "proxy"] = "dhcp"
    interface: str = "eth0"
    server_ip: IPv4Address | None = None
    range_start: IPv4Address | None = None
    range_end: IPv4Address | None = None
    netmask: IPv4Address | None = None
    lease_time: str = "12h"
    tftp_root: Path = Path("/srv/bootbrain/tftp")
    hostsdir: Path | None = None
    pid_file: Path = Path("/run/bootbrain-dnsmasq.pid")
    hook_token_file: Path | None = None
    spool_dir: Path | None = None
    log_dhcp: bool = True
    # --- added by the dnsmasq integration (bootbrain/integrations/dnsmasq.py) ---
    #: dnsmasq's own lease database; one per dnsmasq instance.
    lease_file: Path = Path("/var/lib/bootbrain/dnsmasq.leases")
    #: The ``dhcp-script`` (see ``bootbrain.integrations.render_hook_wrapper``);
    #: None: no lease events.
    hook_script: Path | None = Path("/usr/local/lib/bootbrain/dnsmasq-hook")
    #: dnsmasq serves the iPXE binaries from ``tftp_root`` itself.
    tftp: bool = True
    #: Send IPv6 router advertisements (``enable-ra`` + an ``ra-only`` range): without
    #: one, iPXE waits ~13 s for IPv6 on every boot. Full DHCP mode only.
    ipv6_ra: bool = True
    #: Full DHCP mode: options 3 and 6. None / empty: dnsmasq's defaults (itself).
    router: IPv4Address | None = None
    dns_servers: list[IPv4Address] = []
    #: 0 turns dnsmasq's DNS server off: this instance does DHCP (and TFTP) only.
    dns_port: int = Field(default=0, ge=0, le=65535)
    #: The user dnsmasq drops to after binding its ports (``user=``). Make it bootbrain's
    #: service user so that bootbrain may SIGHUP it when a reservation goes away.
    #: None: dnsmasq's default (nobody / dnsmasq).
    user: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    bios_binary: str = Field(default="undionly.kpxe", pattern=_BOOTFILE)
    efi_binary: str = Field(default="snponly.efi", pattern=_BOOTFILE)
    #: Debian's ipxe package ships no arm64 EFI build; set this if you have one.
    arm64_binary: str | None = Field(default=None, pattern=_BOOTFILE)
    #: What UEFI HTTP boot clients (arch 16) download; empty: ``<base url>/<efi_binary>``.
    http_boot_url: str = Field(default="", pattern=_URL)


class KeaHaPeer(BaseModel):
    """One server of a Kea high-availability pair, as every member's configuration names it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    #: Where the peer's ``kea-ctrl-agent`` listens (the HA hook sends it heartbeats
    #: and lease updates), e.g. ``http://10.0.0.2:8000/``.
    url: str = Field(pattern=r"^https?://[A-Za-z0-9._:\[\]-]{1,100}(:[0-9]{1,5})?/?$")
    role: Literal["primary", "standby"]
    auto_failover: bool = True


class KeaHaSettings(BaseModel):
    """A hot-standby pair (``libdhcp_ha.so``): the primary answers, the standby takes
    over once it has not heard from the primary for ``max_response_delay``.

    Hot-standby rather than load-balancing: reservations come from one shared hosts
    database, so either server gives a machine the same answer, and one Kea has
    capacity to spare for a boot network; hot-standby needs no split of the dynamic
    pool between the two servers, so a lone survivor still has the whole pool.
    """

    model_config = ConfigDict(extra="forbid")

    #: This host's name among ``peers``.
    this_server: str
    peers: list[KeaHaPeer] = Field(min_length=2, max_length=2)
    #: Milliseconds, as Kea's own parameters of the same names.
    heartbeat_delay: int = Field(default=10_000, ge=100)
    max_response_delay: int = Field(default=60_000, ge=100)
    max_ack_delay: int = Field(default=5_000, ge=0)
    #: Clients the standby sees the primary leave unanswered before it takes over
    #: (0: as soon as the primary stops answering its heartbeats).
    max_unacked_clients: int = Field(default=5, ge=0)

    @model_validator(mode="after")
    def _pair(self) -> KeaHaSettings:
        names = [p.name for p in self.peers]
        if len(set(names)) != len(names):
            raise ValueError(f"kea.ha.peers: names must differ (got {names})")
        if sorted(p.role for p in self.peers) != ["primary", "standby"]:
            raise ValueError("kea.ha.peers: one primary and one standby")
        if self.this_server not in names:
            raise ValueError(f"kea.ha.this_server {self.this_server!r} is not among {names}")
        if self.max_response_delay <= self.heartbeat_delay:
            raise ValueError("kea.ha.max_response_delay must exceed heartbeat_delay")
        return self


class KeaSettings(BaseModel):
    """What ``bootbrain kea config`` renders and how Kea is told to reload."""

    model_config = ConfigDict(extra="forbid")

    interface: str = "eth0"
    subnet: IPv4Network | None = None
    pool_start: IPv4Address | None = None
    pool_end: IPv4Address | None = None
    server_ip: IPv4Address | None = None
    valid_lifetime: int = 43200
    config_path: Path = Path("/etc/kea/kea-dhcp4.conf")
    control_socket: Path = Path("/run/kea/kea4-ctrl-socket")
    lease_file: Path = Path("/var/lib/kea/kea-leases4.csv")
    hook_library_dir: Path = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")
    spool_dir: Path | None = None
    hook_token_file: Path | None = None
    # --- added by the Kea integration (bootbrain/integrations/kea.py) ---
    subnet_id: int = Field(default=1, ge=1, le=4294967294)
    #: run_script's target (see ``bootbrain.integrations.render_hook_wrapper``);
    #: None: no lease events.
    hook_script: Path | None = Path("/usr/local/lib/bootbrain/kea-hook")
    #: Where PXE ROMs fetch the iPXE binaries (Kea has no TFTP server); None: server_ip.
    tftp_server: IPv4Address | None = None
    router: IPv4Address | None = None
    dns_servers: list[IPv4Address] = []
    bios_binary: str = Field(default="undionly.kpxe", pattern=_BOOTFILE)
    efi_binary: str = Field(default="snponly.efi", pattern=_BOOTFILE)
    arm64_binary: str | None = Field(default=None, pattern=_BOOTFILE)
    http_boot_url: str = Field(default="", pattern=_URL)
    #: Load ``libdhcp_host_cmds.so`` (Kea >= 2.7 open source); None: if it is installed.
    host_cmds: bool | None = None
    #: Kea's log destination: ``stdout`` (the journal under systemd) or a file path.
    log_output: str = "stdout"
    control_timeout: float = Field(default=5.0, gt=0)
    # --- fleets: Kea's PostgreSQL host backend and an HA pair (integrations/kea.py) ---
    #: ``config-reload``: reservations live in the rendered file, rewritten and reloaded;
    #: ``host-database``: in Kea's own ``hosts`` table, which the reconciler keeps equal
    #: to the inventory and every Kea of the fleet reads; nothing is reloaded.
    mode: Literal["config-reload", "host-database"] = "config-reload"
    #: Kea's hosts database, ``postgresql://user:password@host:port/name`` (libpq's
    #: ``?host=/socket/dir`` works too). Its schema is Kea's (``kea-admin db-init pgsql``),
    #: so it is not bootbrain's database; it may be on the same server.
    hosts_database_url: str = ""
    ha: KeaHaSettings | None = None

    @model_validator(mode="after")
    def _hosts_database(self) -> KeaSettings:
        url = self.hosts_database_url
        if self.mode == "host-database" and not url:
            raise ValueError("kea.hosts_database_url: mode 'host-database' needs it")
        if url and url.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
            raise ValueError("kea.hosts_database_url: must be a postgresql:// URL")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Path("/var/lib/bootbrain")
    _secret: bytes | None = PrivateAttr(default=None)
    database_url: str = ""
    #: HMAC key for API and boot tokens. Required to serve; see :meth:`secret`.
    secret_key: str | None = None
    #: The base URL machines use to reach bootbrain (through nginx in production).
    #: Empty: derived from each request's Host header.
    public_url: str = ""
    #: Base URL for kernels and initrds, available to templates as ``assets``.
    assets_url: str = ""

    #: Profile given to unknown or unassigned machines that no rule matches.
    #: Empty: boot from local disk.
    default_profile: str = ""
    local_boot_method: LocalMethod = "exit"
    #: Register unknown machines as ``discovered`` when they boot or lease.
    discovery: bool = False
    discovery_max: int = Field(default=10_000, ge=0)
    discovery_per_minute: int = Field(default=120, ge=0)

    boot_token_ttl: int = Field(default=3600, gt=0)
    #: What rendering one machine's script may cost: CPU seconds, characters of the
    #: script (and of any value a template makes), and steps (loop iterations, calls
    #: and operators). Beyond them the machine gets an error script and boots locally.
    render_max_seconds: float = Field(default=0.5, gt=0, le=60)
    render_max_bytes: int = Field(default=262_144, ge=4096, le=16_777_216)
    render_max_steps: int = Field(default=1_000_000, ge=1000)
    next_boot_default_ttl: int = Field(default=86_400, gt=0)
    #: Seconds a boot attempt may go without reaching its next stage before the boot
    #: funnel flags it stuck, for profiles that set no ``stuck_after`` of their own.
    boot_stuck_after: int = Field(default=1800, ge=60)
    #: Seconds between the stuck-boot watcher's passes under ``bootbrain serve`` (it
    #: records a ``boot.stuck`` event per stuck attempt and sets the metric); 0: off.
    boot_stuck_check_interval: float = Field(default=60.0, ge=0)
    #: ``json`` (one object a line), ``text``, or ``auto``: text on a terminal, JSON
    #: otherwise (README "Logs").
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Proxies in front of bootbrain that set X-Forwarded-For (nginx: 1). Their count
    #: decides which address is the machine's: 0 trusts no header, so a machine
    #: cannot claim another's address.
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    #: Bootstrap behaviour when the brain does not answer.
    bootstrap_retries: int = Field(default=6, ge=1, le=50)
    bootstrap_backoff: int = Field(default=2, ge=1, le=60)

    #: Events from the hot path are written by a background thread in batches, one per
    #: interval. Short, because a batch's write is a burst of CPU that slows every boot
    #: answered meanwhile: in a boot storm on PostgreSQL p99 / p50 was 1.7-1.9 at
    #: 0.1 s, 2.3-2.5 at 0.25 s and 3.1-3.2 at 1 s, for the same throughput.
    event_flush_interval: float = Field(default=0.1, gt=0)
    #: Seconds a client of ``bootbrain serve`` has to send its whole request (head and
    #: body). Until it has, the request holds no worker; after it, the client gets a
    #: retry script (machine routes) or a 408 and is disconnected.
    client_timeout: float = Field(default=10.0, gt=0, le=300)
    event_batch_max: int = Field(default=500, gt=0)
    #: ``bootbrain prune`` (the Ansible role runs it daily) deletes events older than
    #: this many days, and boot records this many days after their token expired.
    #: 0 keeps them forever.
    event_retention_days: int = Field(default=180, ge=0)
    boot_retention_days: int = Field(default=30, ge=0)

    #: Which DHCP server bootbrain keeps reservations current in.
    dhcp: Literal["none", "dnsmasq", "kea"] = "none"
    dnsmasq: DnsmasqSettings = DnsmasqSettings()
    kea: KeaSettings = KeaSettings()

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.dhcp != "none" and not self.public_url:
            raise ValueError(
                f"public_url: dhcp = {self.dhcp!r} needs the URL machines reach bootbrain at "
                "(it goes into the DHCP configuration)"
            )
        self.public_url = self.public_url.rstrip("/")
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'bootbrain.db'}"
        if self.dnsmasq.hostsdir is None:
            self.dnsmasq.hostsdir = self.data_dir / "dnsmasq-hosts"
        if self.dnsmasq.spool_dir is None:
            self.dnsmasq.spool_dir = self.data_dir / "spool"
        if self.kea.spool_dir is None:
            self.kea.spool_dir = self.data_dir / "spool"
        return self

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "secret_key"

    def secret(self) -> bytes:
        """The configured secret, or the one ``bootbrain init`` wrote; never a default.

        Read once: the boot hot path and the metadata routes ask for it per request.
        (Through ``__pydantic_private__``: ``self._secret`` goes through pydantic's
        ``__getattr__``, 6 µs a call.)
        """
        private = self.__pydantic_private__
        assert private is not None  # pydantic fills it for models with private attributes
        secret: bytes | None = private["_secret"]
        if secret is None:
            secret = private["_secret"] = self._read_secret()
        return secret

    def _read_secret(self) -> bytes:
        if self.secret_key:
            return self.secret_key.encode()
        try:
            value = self.secret_file.read_text().strip()
        except FileNotFoundError:
            value = ""
        if not value:
            raise MissingSecretError(
                f"no secret configured: set secret_key in the config file, "
                f"BOOTBRAIN_SECRET_KEY, or run `bootbrain init` to create {self.secret_file}"
            )
        return value.encode()

    def ensure_secret(self) -> bool:
        """Create the secret file if no secret is configured; True if one was created."""
        if self.secret_key or self.secret_file.exists():
            return False
        private_dir(self.secret_file.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(self.secret_file, flags, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        return True


def config_file() -> Path:
    return Path(os.environ.get("BOOTBRAIN_CONFIG", DEFAULT_CONFIG_FILE))


class _SourcedSettings(Settings, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BOOTBRAIN_", env_nested_delimiter="__", extra="ignore"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: environment over the file over the defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file()))


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from a mapping (tests), or from defaults, the TOML file and the environment."""
    if overrides is not None:
        return Settings.model_validate(dict(overrides))
    path = config_file()
    if "BOOTBRAIN_CONFIG" in os.environ and not path.is_file():
        raise FileNotFoundError(f"BOOTBRAIN_CONFIG names {path}, which does not exist")
    loaded = _SourcedSettings()
    return Settings.model_validate(loaded.model_dump())
