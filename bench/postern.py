"""Postern's side of the benchmarks: its services as processes, as an operator runs them.

A private nats-server (``services.ctl.daemons``: JetStream in the harness's directory,
``sync_interval: always``), then ``python -m services.store`` and, when a workload needs
SMTP, ``python -m services.filter``, configured with ``POSTERN_*`` variables on free
loopback ports. Benchmark accounts are created with :class:`mailcore.directory.Directory`
over NATS. What the services do not offer yet (a listener that does not answer, a
delivery consumer that does not consume) is found by probing, and a workload then reports
"not available yet" for Postern instead of a figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen.wire import Imap, Pop3, ProtocolError, Smtp
from bench.procs import die_with_parent
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus, connect
from mailcore.bus.schemas import ClientInfo, MailMessage, ScanResult, new_message_id
from mailcore.bus.setup import BusLimits, declare_all
from mailcore.directory import AlreadyExists, Directory
from mailcore.tls import ensure_certificate
from services.ctl import daemons

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PROBE_USER = "probe"  # local part of the account the delivery probe writes to
START_TIMEOUT = 30.0
PROBE_TIMEOUT = 10.0
LISTEN_WAIT = 5.0
REFUSED = "nothing listens there"


@dataclass(frozen=True, slots=True)
class Scanners:
    """Where the filter finds spamd and clamd (W2); None in :class:`Postern` = stubbed."""

    spamd_port: int
    clamd_port: int


@dataclass(frozen=True, slots=True)
class MirrorLink:
    """This store's name in a mirrored pair, its peer's, and the peer's NATS (W6)."""

    node: str
    peer: str
    peer_nats_url: str


@dataclass
class Postern:
    root: Path
    domain: str
    users: dict[str, str]
    with_filter: bool = False
    scanners: Scanners | None = None
    profile_dir: Path | None = None
    nats_port: int = field(default_factory=daemons.free_port)
    smtp_port: int = field(default_factory=daemons.free_port)
    imap_port: int = field(default_factory=daemons.free_port)
    pop3_port: int = field(default_factory=daemons.free_port)
    store_ops_port: int = field(default_factory=daemons.free_port)
    filter_ops_port: int = field(default_factory=daemons.free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    features: dict[str, str | None] = field(default_factory=dict)
    # W8: the outbound relay beside the filter, its static routes, the submission port.
    relay_routes: dict[str, str] | None = None
    relay_env: dict[str, str] = field(default_factory=dict)
    submission_port: int = field(default_factory=daemons.free_port)
    relay_ops_port: int = field(default_factory=daemons.free_port)
    # W6: this store's mirror process (services.mirror) and its peer, as docs/mirror.md runs it.
    mirror: MirrorLink | None = None
    mirror_ops_port: int = field(default_factory=daemons.free_port)
    mirror_env: dict[str, str] = field(default_factory=dict)  # W6s/W6f: sync mode, followers
    # the source tree the services run from (bench/imap_cpu.py runs two side by side)
    tree: Path = ROOT
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def with_relay(self) -> bool:
        return self.relay_routes is not None

    @property
    def probe_address(self) -> str:
        return f"{PROBE_USER}@{self.domain}"

    @property
    def nats_url(self) -> str:
        return f"nats://{HOST}:{self.nats_port}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # --- processes ------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        s = self.scanners
        env = {
            **os.environ,
            "PYTHONPATH": str(self.tree),
            "POSTERN_DATA": str(self.data),
            "POSTERN_NATS_URL": self.nats_url,
            "POSTERN_HOSTNAME": f"mx.{self.domain}",
            "POSTERN_LISTEN_HOST": HOST,
            "POSTERN_LOG_FORMAT": "json",
            "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
            "POSTERN_STORE_OPS_PORT": str(self.store_ops_port),
            "POSTERN_FILTER_OPS_PORT": str(self.filter_ops_port),
            "POSTERN_SMTP_PORT": str(self.smtp_port),
            "POSTERN_SUBMISSION_PORT": str(self.submission_port) if self.with_relay else "0",
            "POSTERN_SUBMISSIONS_PORT": "0",
            "POSTERN_IMAP_PORT": str(self.imap_port),
            "POSTERN_IMAPS_PORT": "0",
            "POSTERN_POP3_PORT": str(self.pop3_port),
            "POSTERN_POP3S_PORT": "0",
            # Many benchmark sessions share one account and one address, as with Dovecot,
            # whose per-user cap the harness raises the same way.
            "POSTERN_MAX_CONNECTIONS_PER_USER": "1000",
            "POSTERN_MAX_CONNECTIONS_PER_IP": "1000",
            "POSTERN_SPAMD_ENABLED": "true" if s else "false",
            "POSTERN_CLAMD_ENABLED": "true" if s else "false",
        }
        if self.relay_routes is not None:
            env |= {
                "POSTERN_RELAY_OPS_PORT": str(self.relay_ops_port),
                "POSTERN_RELAY_ROUTES": json.dumps(self.relay_routes),
                **self.relay_env,
            }
        if self.mirror is not None:
            env |= {
                "POSTERN_MIRROR_OPS_PORT": str(self.mirror_ops_port),
                "POSTERN_MIRROR_NODE": self.mirror.node,
                "POSTERN_MIRROR_PEER": self.mirror.peer,
                "POSTERN_PEER_NATS_URL": self.mirror.peer_nats_url,
                **self.mirror_env,
            }
        if s is not None:
            env |= {
                "POSTERN_SPAMD_HOST": HOST,
                "POSTERN_SPAMD_PORT": str(s.spamd_port),
                "POSTERN_CLAMD_HOST": HOST,
                "POSTERN_CLAMD_PORT": str(s.clamd_port),
            }
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=self.env() | self.extra_env,
                cwd=self.tree,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def _python(self, module: str) -> list[str]:
        if self.profile_dir is None:
            return [sys.executable, "-m", module]
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{module.rsplit('.', 1)[-1]}-{int(time.time())}.txt"
        return [
            sys.executable,
            "-m",
            "pyinstrument",
            "--renderer=text",
            "--outfile",
            str(out),
            "-m",
            module,
        ]

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        ensure_certificate(self.data / "tls" / "cert.pem", self.data / "tls" / "key.pem", HOST)
        conf = daemons.write_nats_config(
            self.root / "nats" / "nats.conf",
            host=HOST,
            port=self.nats_port,
            store_dir=self.root / "nats" / "jetstream",
        )
        self._spawn("nats", daemons.nats_command(conf))
        if not daemons.wait_for_port(HOST, self.nats_port, START_TIMEOUT, self._alive("nats")):
            raise RuntimeError(f"nats-server did not start:\n{self.log_tail('nats')}")
        asyncio.run(self._provision())
        self._spawn("store", self._python("services.store"))
        if self.with_filter:
            self._spawn("filter", self._python("services.filter"))
        if self.with_relay:
            self._spawn("relay", self._python("services.filter.relay"))
        if self.mirror is not None:
            self._spawn("mirror", self._python("services.mirror"))
        self._wait_ops()
        self.features = asyncio.run(self._probe())

    def start_mirror(self) -> None:
        """(Re)start the mirror process alone and wait for its /healthz (W6 catch-up)."""
        assert self.mirror is not None
        self._spawn("mirror", self._python("services.mirror"))
        self._wait_ops(only="mirror")

    def stop_process(self, name: str) -> None:
        """Stop one service (SIGTERM; SIGKILL after 15 s)."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30 if self.profile_dir else 15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _alive(self, name: str) -> object:
        return lambda: name in self.procs and self.procs[name].poll() is None

    def _wait_ops(self, only: str | None = None) -> None:
        """Wait until each service answers /healthz with 200 (its listeners are then up)."""
        wanted = {"store": self.store_ops_port}
        if self.with_filter:
            wanted["filter"] = self.filter_ops_port
        if self.with_relay:
            wanted["relay"] = self.relay_ops_port
        if self.mirror is not None:
            wanted["mirror"] = self.mirror_ops_port
        if only is not None:
            wanted = {only: wanted[only]}
        for name, port in wanted.items():
            if not daemons.wait_for_port(HOST, port, START_TIMEOUT, self._alive(name)):
                raise RuntimeError(f"postern {name} did not start:\n{self.log_tail(name)}")
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and not _healthy(port):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"postern {name} exited:\n{self.log_tail(name)}")
                time.sleep(0.2)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def stop(self) -> None:
        """Stop services first, NATS last (SIGTERM; SIGKILL after 15 s)."""
        for name in ("relay", "filter", "mirror", "store", "nats"):
            self.stop_process(name)

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- accounts and probes -------------------------------------------------------------
    async def bus(self) -> Bus:
        bus = await connect(self.nats_url, "postern-bench", wait=20)
        await declare_all(bus.js, BusLimits())
        return bus

    async def _provision(self) -> None:
        bus = await self.bus()
        try:
            directory = await Directory.open(bus.js, watch=False)
            if directory.domain(self.domain) is None:
                await directory.add_domain(self.domain)
            accounts = {**self.users, self.probe_address: "probe-password"}
            for address, password in accounts.items():
                with contextlib.suppress(AlreadyExists):
                    await directory.add_user(address, password)
        finally:
            await bus.close()

    async def _probe(self) -> dict[str, str | None]:
        """What works: None for a feature that answers, else why it does not."""
        user, password = next(iter(self.users.items()))
        imap, pop3, smtp = await asyncio.gather(
            _retry_refused(lambda: _probe_imap(self.imap_port, user, password)),
            _retry_refused(lambda: _probe_pop3(self.pop3_port, user, password)),
            _retry_refused(lambda: _probe_smtp(self.smtp_port, user))
            if self.with_filter
            else _constant("filter not started"),
        )
        found: dict[str, str | None] = {"imap": imap, "pop3": pop3, "smtp": smtp}
        found["delivery"] = await self._probe_delivery(self.probe_address)
        return found

    async def _probe_delivery(self, rcpt: str) -> str | None:
        """Publish one message to MAIL_INBOUND and wait for the store to consume it."""
        bus = await self.bus()
        try:
            await publish_messages(bus, rcpt, [b"Subject: probe\r\n\r\nprobe\r\n"])
            deadline = time.monotonic() + PROBE_TIMEOUT
            while time.monotonic() < deadline:
                if await inbound_backlog(bus) == 0:
                    return None
                await asyncio.sleep(0.2)
            return "the store does not consume MAIL_INBOUND yet (no delivery consumer)"
        finally:
            await bus.close()

    def why_not(self, *needed: str) -> str | None:
        """None when every feature in ``needed`` works, else the first reason."""
        for name in needed:
            reason = self.features.get(name, f"{name} was not probed")
            if reason is not None:
                return reason
        return None


async def _constant(value: str | None) -> str | None:
    return value


async def _retry_refused(
    probe: Callable[[], Awaitable[str | None]], wait: float = LISTEN_WAIT
) -> str | None:
    """Run ``probe`` until it stops failing with "nothing listens there" or ``wait`` passes:
    /healthz can answer a moment before the last listener is up."""
    deadline = time.monotonic() + wait
    while True:
        why = await probe()
        if why is None or REFUSED not in why or time.monotonic() > deadline:
            return why
        await asyncio.sleep(0.25)


async def _probe_imap(port: int, user: str, password: str) -> str | None:
    try:
        conn = await Imap.connect(HOST, port, timeout=PROBE_TIMEOUT)
    except (OSError, TimeoutError, ProtocolError) as exc:
        return f"the store does not serve IMAP yet (port {port}: {_short(exc)})"
    try:
        await asyncio.wait_for(conn.login(user, password), PROBE_TIMEOUT)
        await asyncio.wait_for(conn.select("INBOX"), PROBE_TIMEOUT)
    except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
        return f"IMAP LOGIN/SELECT does not work yet ({_short(exc)})"
    finally:
        await conn.logout()
    return None


async def _probe_pop3(port: int, user: str, password: str) -> str | None:
    try:
        conn = await Pop3.connect(HOST, port, timeout=PROBE_TIMEOUT)
    except (OSError, TimeoutError, ProtocolError) as exc:
        return f"the store does not serve POP3 yet (port {port}: {_short(exc)})"
    try:
        await asyncio.wait_for(conn.login(user, password), PROBE_TIMEOUT)
        await asyncio.wait_for(conn.command(b"STAT"), PROBE_TIMEOUT)
        await conn.quit()
    except (OSError, TimeoutError, ProtocolError) as exc:
        conn.writer.close()
        return f"POP3 USER/PASS/STAT does not work yet ({_short(exc)})"
    return None


async def _probe_smtp(port: int, rcpt: str) -> str | None:
    try:
        conn = await Smtp.connect(HOST, port, timeout=PROBE_TIMEOUT)
    except (OSError, TimeoutError, ProtocolError) as exc:
        return f"the filter does not accept SMTP yet (port {port}: {_short(exc)})"
    try:
        await asyncio.wait_for(conn.send_line(b"MAIL FROM:<probe@example.org>", 250), 10)
        await asyncio.wait_for(conn.send_line(b"RCPT TO:<%s>" % rcpt.encode(), 250), 10)
        await asyncio.wait_for(conn.send_line(b"RSET", 250), 10)
    except (OSError, TimeoutError, ProtocolError) as exc:
        return f"the filter does not take a local recipient yet ({_short(exc)})"
    finally:
        await conn.quit()
    return None


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _short(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    text = str(exc) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


# --- the bus: pre-loading mail for the store ---------------------------------------------
async def inbound_backlog(bus: Bus) -> int:
    info = await bus.js.stream_info(names.STREAM_INBOUND)
    return int(info.state.messages or 0)


async def publish_messages(
    bus: Bus, rcpt: str, bodies: Iterable[bytes], *, concurrency: int = 64
) -> int:
    """Publish ``bodies`` to MAIL_INBOUND for ``rcpt`` as the filter would (schema v1,
    Nats-Msg-Id); each publish waits for its PubAck. Returns how many were published."""
    objects = await bus.js.object_store(names.OBJ_BODIES)
    it = iter(bodies)
    count = 0

    async def worker() -> None:
        nonlocal count
        for body in it:
            msg = MailMessage(
                id=new_message_id(),
                mail_from="sender@example.org",
                recipients=[rcpt],
                size=len(body),
                client=ClientInfo(ip=HOST, helo="bench.client"),
                scan=ScanResult(),
            )
            await publish_mail(bus.js, objects, names.SUBJECT_INBOUND, msg, body)
            count += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count
