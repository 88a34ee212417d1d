"""Starting the two sides inside a workload, with their teardown on the workload's stack."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.corpus import message
from bench.peers.dovecot import Dovecot, DovecotLayout, DovecotPorts
from bench.peers.mailuser import PeerSetupError, mail_user
from bench.peers.postfix import Postfix, PostfixLayout
from bench.peers.scanners import ScannerDaemons
from bench.postern import Postern, Scanners
from bench.profiling import py_spy
from bench.results import WorkloadResult
from bench.workloads.base import DOMAIN, Context
from services.ctl.daemons import free_port


def start_dovecot(
    ctx: Context, stack: contextlib.ExitStack, where: Path, users: dict[str, str]
) -> Dovecot:
    why = Dovecot.available()
    if why is not None:
        raise PeerSetupError(why)
    ports = DovecotPorts(imap=free_port(), pop3=free_port(), lmtp=free_port())
    d = Dovecot(DovecotLayout(where), ports, mail_user(), DOMAIN, users)
    stack.callback(d.stop)
    d.start()
    ctx.log(f"   dovecot up: imap {ports.imap}, pop3 {ports.pop3}, lmtp {ports.lmtp}")
    return d


def start_postfix(
    ctx: Context, stack: contextlib.ExitStack, where: Path, dovecot: Dovecot
) -> Postfix:
    why = Postfix.available()
    if why is not None:
        raise PeerSetupError(why)
    p = Postfix(PostfixLayout(where), free_port(), dovecot.ports.lmtp, DOMAIN, list(dovecot.users))
    stack.callback(p.stop)
    p.start()
    ctx.log(f"   postfix up: smtp {p.smtp_port} -> lmtp {p.lmtp_port}")
    return p


def start_scanners(ctx: Context, stack: contextlib.ExitStack, where: Path) -> ScannerDaemons:
    s = ScannerDaemons(where)
    stack.callback(s.stop)
    ctx.log("   starting spamd and clamd (spamd compiles its rules: up to a minute)")
    s.start()
    ctx.log(f"   spamd {s.spamd_port}, clamd {s.clamd_port} ({s.clamav_db})")
    return s


def start_postern(
    ctx: Context,
    stack: contextlib.ExitStack,
    where: Path,
    users: dict[str, str],
    result: WorkloadResult,
    *,
    needs: tuple[str, ...],
    with_filter: bool = False,
    scanners: ScannerDaemons | None = None,
    relay_routes: dict[str, str] | None = None,
    relay_env: dict[str, str] | None = None,
) -> Postern | None:
    """Postern's services, or None (with the reason in ``result``) when a feature the
    workload needs does not work yet; the services are then stopped at once."""
    p = Postern(
        where,
        DOMAIN,
        users,
        with_filter=with_filter,
        scanners=Scanners(scanners.spamd_port, scanners.clamd_port) if scanners else None,
        # Without py-spy (bench/profiling.py), fall back to pyinstrument inside the process.
        profile_dir=ctx.rundir / "profiles" if ctx.profile and py_spy() is None else None,
        relay_routes=relay_routes,
        relay_env=relay_env or {},
    )
    stack.callback(p.stop)
    p.start()
    why = p.why_not(*needs)
    if why is not None:
        result.unavailable["postern"] = f"not available yet: {why}"
        p.stop()
        return None
    ctx.log(
        f"   postern up: nats {p.nats_port}, smtp {p.smtp_port}, imap {p.imap_port}, "
        f"pop3 {p.pop3_port}"
    )
    return p


def write_message_files(where: Path, size: int, to: str) -> tuple[Path, bytes]:
    """The message smtp-source sends (``-F``: LF lines, it adds the CRs) and its CRLF
    bytes (what spamd is fed and the probe sends)."""
    body = message(0, size, to=to)
    path = where / f"message-{size}.txt"
    path.write_bytes(body.replace(b"\r\n", b"\n"))
    return path, body
