"""A simulated iPXE client: runs the scripts a brain answers the way iPXE does.

The boot-storm benchmark (``bench/boot_storm.py``) drives thousands of these at once.
Each one behaves like a machine that DHCP pointed at ``/boot.ipxe``: it fetches that
script and *executes* it — ``set`` with ``${…}`` expansion (including
``${netX/mac:hexhyp}`` and ``:hexraw``), ``chain``, ``kernel``/``initrd``/``boot``,
``sleep``, labels and ``goto``, ``iseq``/``isset``/``inc``, ``||`` and ``&&`` — so
the bootstrap's retry schedule, the brain's retry scripts and the decision script's
download retries are followed as written, never re-implemented here. A booted
"OS" then fetches its metadata with the per-boot token and posts completion.

Only the subset of iPXE that bootbrain's scripts use is understood; anything else
ends the machine's run as an error of kind ``unsupported``, so a script the
simulator cannot follow is reported, never silently skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp

#: iPXE gives up a TCP connection whose SYNs go unanswered once its retransmission
#: timer's back-off passes its ceiling; this is the simulator's stand-in for that.
CONNECT_TIMEOUT = 15.0
#: iPXE aborts an HTTP download that has received nothing for this long.
IDLE_TIMEOUT = 120.0
#: What the booted OS does when its metadata or completion call fails.
OS_TRIES = 5
#: A script that jumps more often than this is looping; the machine is stopped.
MAX_STEPS = 10_000
CHUNK = 256 * 1024


class Outcome:
    """How a simulated machine's run ended."""

    COMPLETED = "completed"  # booted the kernel, fetched its metadata, reported done
    FELL_THROUGH = "fell-through"  # the script (or iPXE) gave up: local disk
    BOOTED_NOT_DONE = "booted-not-done"  # booted, but metadata or completion failed
    ERROR = "error"  # the simulator could not follow the script


@dataclass
class Identity:
    """What iPXE knows about the machine before any script runs."""

    mac: str
    uuid: str = ""
    serial: str = ""
    manufacturer: str = ""
    product: str = ""
    asset: str = ""
    board_serial: str = ""
    buildarch: str = "x86_64"
    platform: str = "efi"

    def settings(self) -> dict[str, str]:
        return {
            "mac": self.mac,
            "uuid": self.uuid,
            "serial": self.serial,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "asset": self.asset,
            "board-serial": self.board_serial,
            "buildarch": self.buildarch,
            "platform": self.platform,
        }


@dataclass
class Trace:
    """What one machine did, for the storm's report."""

    outcome: str = ""
    started: float = 0.0
    ended: float = 0.0
    decision_latencies: list[float] = field(default_factory=list)
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    bytes_downloaded: int = 0
    messages: list[str] = field(default_factory=list)


class ScriptEnd(Exception):  # noqa: N818 (control flow, not an error)
    """The running script is over (``exit``, a replacing ``chain``, or ``boot``)."""


class UnsupportedError(Exception):
    """The script uses a command this simulator does not implement."""


def _hex(value: str, sep: str) -> str:
    return sep.join(f"{b:02x}" for b in value.encode())


def expand(text: str, settings: dict[str, str]) -> str:
    """iPXE's ``${name[:type]}`` expansion (one pass, as iPXE does per command)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            out.append(text[i:])
            break
        end = text.find("}", start)
        if end < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        name, _, kind = text[start + 2 : end].partition(":")
        scope, _, key = name.rpartition("/")
        del scope  # netX/, net0/ …: the simulated machine has one NIC
        value = settings.get(key, "")
        if kind == "hexhyp":
            value = value.replace(":", "-") if key == "mac" else _hex(value, "-")
        elif kind == "hexraw":
            value = _hex(value, "")
        elif kind == "hex":
            value = _hex(value, ":")
        out.append(value)
        i = end + 1
    return "".join(out)


def stage_of(url: str) -> str:
    """Which step of a boot a URL belongs to, for errors by kind."""
    path = url.split("?")[0]
    if path.endswith("/boot.ipxe"):
        return "bootstrap"
    if path.endswith("/ipxe"):
        return "decision"
    if path.endswith("/done"):
        return "completion"
    if "/boot/" in path:
        return "metadata"
    return "download"


def _describe(e: BaseException) -> str:
    if isinstance(e, aiohttp.ClientOSError):
        return f"{type(e).__name__} ({e.errno or str(e)[:60]})"
    return type(e).__name__


#: Options of iPXE's image and chain commands that take a value (``--name X``).
_VALUE_OPTIONS = frozenset({"--name", "-n", "--timeout", "-t", "--default", "-d"})


def _positional(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def split_commands(line: str) -> list[tuple[str, str]]:
    """A line's commands with the operator before each (``""`` for the first)."""
    words = line.split()
    parts: list[tuple[str, str]] = []
    op = ""
    current: list[str] = []
    for word in words:
        if word in ("||", "&&"):
            parts.append((op, " ".join(current)))
            op, current = word, []
        else:
            current.append(word)
    parts.append((op, " ".join(current)))
    return parts


@dataclass
class Link:
    """The simulated NIC and the client's behaviour on the wire."""

    session: aiohttp.ClientSession
    bits_per_second: float  # 0: unthrottled
    connect_timeout: float = CONNECT_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    clock: Callable[[], float] = time.monotonic


class Machine:
    """One simulated iPXE client."""

    def __init__(self, identity: Identity, link: Link) -> None:
        self.settings = identity.settings()
        self.link = link
        self.trace = Trace()
        self.kernel: str | None = None
        self.initrds: list[str] = []

    # -- HTTP, the way iPXE fails -------------------------------------------------

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.link.connect_timeout, sock_read=self.link.idle_timeout
        )

    async def _get(self, url: str, *, download: bool = False) -> bytes | None:
        """The body of a 2xx answer, or None (the failure counted by kind)."""
        try:
            async with self.link.session.get(url, timeout=self._timeout()) as resp:
                if resp.status >= 400:
                    self._error(f"http {resp.status}", url)
                    await resp.read()
                    return None
                if not download:
                    return await resp.read()
                return await self._throttled_read(resp)
        except TimeoutError:
            self._error("timeout", url)
        except aiohttp.ClientConnectorError:
            self._error("connect", url)
        except (aiohttp.ClientError, ConnectionError) as e:
            self._error(_describe(e), url)
        return None

    def _error(self, kind: str, url: str) -> None:
        self.trace.errors[f"{kind} on {stage_of(url)}"] += 1

    async def _throttled_read(self, resp: aiohttp.ClientResponse) -> bytes:
        """Read and discard the body at the link's speed; the bytes are not kept."""
        rate = self.link.bits_per_second / 8
        started = self.link.clock()
        got = 0
        async for chunk in resp.content.iter_chunked(CHUNK):
            got += len(chunk)
            if rate:
                ahead = got / rate - (self.link.clock() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        self.trace.bytes_downloaded += got
        return b"x" * min(got, 1)  # non-empty: success

    async def _post(self, url: str, data: dict[str, str]) -> bool:
        try:
            async with self.link.session.post(url, data=data, timeout=self._timeout()) as resp:
                await resp.read()
                if resp.status >= 400:
                    self._error(f"http {resp.status}", url)
                    return False
                return True
        except TimeoutError:
            self._error("timeout", url)
        except (aiohttp.ClientError, ConnectionError) as e:
            self._error(_describe(e), url)
        return False

    # -- the run ------------------------------------------------------------------

    async def run(self, first_url: str) -> Trace:
        """DHCP handed out ``first_url``: fetch it and follow whatever it says."""
        self.trace.started = self.link.clock()
        try:
            ok = await self._chain(first_url, base=first_url)
            # iPXE's autoboot failing, or a script that ran to its end without
            # booting: the firmware moves on to the next boot device.
            if self.trace.outcome == "":
                self.trace.outcome = Outcome.FELL_THROUGH
                if not ok:
                    self.trace.messages.append("first fetch failed")
        except UnsupportedError as e:
            self.trace.outcome = Outcome.ERROR
            self.trace.errors["unsupported"] += 1
            self.trace.messages.append(str(e))
        self.trace.ended = self.link.clock()
        return self.trace

    async def _chain(self, url: str, base: str) -> bool:
        """Fetch a script and run it; False if it could not be fetched."""
        url = urljoin(base, url)
        is_decision = "/ipxe?" in url or url.endswith("/ipxe")
        t0 = self.link.clock()
        body = await self._get(url)
        if body is None:
            return False
        if is_decision:
            self.trace.decision_latencies.append(self.link.clock() - t0)
        text = body.decode(errors="replace")
        if not text.startswith("#!ipxe"):
            self.trace.errors["not a script"] += 1
            return False
        with contextlib.suppress(ScriptEnd):
            await self._execute(text, url)
        return True

    async def _execute(self, script: str, url: str) -> None:
        lines = script.splitlines()
        labels = {ln.strip()[1:]: i for i, ln in enumerate(lines) if ln.strip().startswith(":")}
        pc = 0
        steps = 0
        while pc < len(lines):
            steps += 1
            if steps > MAX_STEPS:
                raise UnsupportedError("script loops")
            line = lines[pc].strip()
            pc += 1
            if not line or line.startswith("#") or line.startswith(":"):
                continue
            ok = True
            for op, command in split_commands(line):
                if (op == "||" and ok) or (op == "&&" and not ok):
                    continue
                result = await self._command(expand(command, self.settings), url)
                if isinstance(result, str):  # goto
                    if result not in labels:
                        raise UnsupportedError(f"goto to a missing label {result!r}")
                    pc = labels[result] + 1
                    break
                ok = result

    async def _command(self, command: str, url: str) -> bool | str:
        """Run one command; True/False as iPXE's status, or a label to jump to."""
        argv = command.split()
        if not argv:
            return True
        name, args = argv[0], argv[1:]
        positional = _positional(args)
        if name == "set":
            key = args[0].split(":")[0]
            self.settings[key] = " ".join(args[1:])
            return True
        if name == "clear":
            self.settings.pop(positional[0].split(":")[0], None)
            return True
        if name in ("menu", "item"):
            return True
        if name == "choose":
            return await self._choose(args)
        if name == "echo":
            self.trace.messages.append(" ".join(args))
            return True
        if name == "sleep":
            self.trace.retries += 1 if self._is_retry_sleep() else 0
            await asyncio.sleep(float(positional[0]))
            return True
        if name == "goto":
            return positional[0]
        if name == "isset":
            return bool(positional)
        if name == "iseq":
            return len(positional) == 2 and positional[0] == positional[1]
        if name == "inc":
            key = positional[0]
            self.settings[key] = str(int(self.settings.get(key) or 0) + 1)
            return True
        if name == "exit":
            if self.trace.outcome == "":
                self.trace.outcome = Outcome.FELL_THROUGH
            raise ScriptEnd
        if name == "sanboot":
            self.trace.outcome = Outcome.FELL_THROUGH
            raise ScriptEnd
        if name == "chain":
            ok = await self._chain(positional[0], base=url)
            if ok and "--replace" in args:
                raise ScriptEnd
            return ok
        if name in ("kernel", "imgexec"):
            return await self._fetch_image(positional[0], url, kernel=True)
        if name in ("initrd", "imgfetch", "module"):
            return await self._fetch_image(positional[0], url, kernel=False)
        if name == "boot":
            if self.kernel is None:
                return False
            await self._booted_os()
            raise ScriptEnd
        if name in ("imgfree", "prompt"):
            return True
        raise UnsupportedError(f"command {name!r}")

    async def _choose(self, args: list[str]) -> bool:
        """Nobody sits at the console: the menu times out to its default item."""
        opts = dict(itertools.pairwise(args))
        default, timeout_ms = opts.get("--default"), opts.get("--timeout")
        if default is None:
            raise UnsupportedError("a menu without a default waits for a keypress forever")
        await asyncio.sleep(int(timeout_ms or 0) / 1000)
        self.settings[args[-1]] = default
        return True

    def _is_retry_sleep(self) -> bool:
        # bootbrain's scripts announce each retry with an echo just before its sleep.
        return bool(self.trace.messages) and "retry" in self.trace.messages[-1]

    async def _fetch_image(self, target: str, url: str, *, kernel: bool) -> bool:
        full = urljoin(url, target)
        if await self._get(full, download=True) is None:
            self.trace.retries += 1
            return False
        if kernel:
            self.kernel = full
        else:
            self.initrds.append(full)
        return True

    async def _booted_os(self) -> None:
        """The kernel runs: fetch metadata with the per-boot token, then report done."""
        meta = self.settings.get("IPXE_BOOT_METADATA_URL", "")
        done = self.settings.get("IPXE_BOOT_DONE_URL", "")
        if not meta or not done:
            self.trace.outcome = Outcome.BOOTED_NOT_DONE
            self.trace.messages.append("the script gave no metadata or completion URL")
            return
        for attempt in range(OS_TRIES):
            if await self._get(meta + "metadata.json") is not None:
                break
            self.trace.retries += 1
            await asyncio.sleep(2**attempt)
        else:
            self.trace.outcome = Outcome.BOOTED_NOT_DONE
            return
        for attempt in range(OS_TRIES):
            if await self._post(done, {"status": "ok"}):
                self.trace.outcome = Outcome.COMPLETED
                return
            self.trace.retries += 1
            await asyncio.sleep(2**attempt)
        self.trace.outcome = Outcome.BOOTED_NOT_DONE
