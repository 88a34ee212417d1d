"""A private Postfix instance (``postfix -c <dir>``) that hands mail to Dovecot over LMTP.

Its own main.cf/master.cf, queue_directory and data_directory live under the harness's
directory; the system's ``/etc/postfix`` instance is never touched. Settings are Postfix's
defaults apart from what a private loopback instance needs (see :func:`render_main_cf`):
the one listener on a high loopback port, a virtual domain whose mailboxes are delivered
by ``lmtp:`` to the private Dovecot, and no chroot (a chroot needs copies of /etc files in
the queue directory; it does not change the work Postfix does per message).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.peers.mailuser import PeerSetupError
from services.ctl.daemons import wait_for_port

POSTFIX = "/usr/sbin/postfix"


@dataclass(slots=True)
class PostfixLayout:
    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.root / "spool"

    @property
    def data_dir(self) -> Path:
        return self.root / "lib"

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    @property
    def mailboxes(self) -> Path:
        return self.config_dir / "vmailbox"

    @property
    def transport(self) -> Path:
        return self.config_dir / "transport"

    @property
    def pid_file(self) -> Path:
        return self.queue_dir / "pid" / "master.pid"


def render_main_cf(
    layout: PostfixLayout, *, domain: str, lmtp_port: int, transport: bool = False
) -> str:
    # W8: mail for other domains goes where the transport table says (the sink), as
    # Postern's POSTERN_RELAY_ROUTES sends it; 127.0.0.0/8 may relay (mynetworks).
    routes = f"transport_maps = texthash:{layout.transport}\n" if transport else ""
    return (
        routes
        + f"""\
# Private benchmark instance written by bench/peers/postfix.py; not the system's Postfix.
compatibility_level = 3.6
queue_directory = {layout.queue_dir}
data_directory = {layout.data_dir}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = {layout.maillog}
myhostname = mx.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{layout.mailboxes}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
"""
    )


# service type private unpriv chroot wakeup maxproc command: Debian's master.cf services,
# without chroot, and the one smtpd on the benchmark port.
_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def render_master_cf(smtp_port: int) -> str:
    head = f"127.0.0.1:{smtp_port} inet n - n - - smtpd\n"
    return "# Written by bench/peers/postfix.py\n" + head + _MASTER_SERVICES


def render_transport(routes: dict[str, str]) -> str:
    """A transport(5) table: each domain by SMTP to ``[host]:port`` (no MX lookup)."""
    out = []
    for domain, where in sorted(routes.items()):
        host, _, port = where.rpartition(":")
        out.append(f"{domain} smtp:[{host}]:{port}\n")
    return "".join(out)


def render_mailboxes(addresses: list[str]) -> str:
    """A texthash: table of the virtual mailboxes (unknown recipients get 550, as Postern)."""
    return "".join(f"{a} OK\n" for a in sorted(addresses))


@dataclass
class Postfix:
    layout: PostfixLayout
    smtp_port: int
    lmtp_port: int
    domain: str
    addresses: list[str]
    routes: dict[str, str] | None = None  # domain -> host:port (a transport table)

    @staticmethod
    def available() -> str | None:
        if not os.path.exists(POSTFIX):
            return "postfix is not installed (apt-get install postfix)"
        if os.geteuid() != 0:
            return "Postfix's master must be started as root"
        return None

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [POSTFIX, "-c", str(self.layout.config_dir), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and proc.returncode != 0:
            raise PeerSetupError(
                f"postfix {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}"
            )
        return proc

    def write(self) -> None:
        cfg = self.layout.config_dir
        cfg.mkdir(parents=True, exist_ok=True)
        self.layout.queue_dir.mkdir(parents=True, exist_ok=True)
        self.layout.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.layout.root, 0o755)
        (cfg / "main.cf").write_text(
            render_main_cf(
                self.layout,
                domain=self.domain,
                lmtp_port=self.lmtp_port,
                transport=self.routes is not None,
            )
        )
        if self.routes is not None:
            self.layout.transport.write_text(render_transport(self.routes))
        (cfg / "master.cf").write_text(render_master_cf(self.smtp_port))
        self.layout.mailboxes.write_text(render_mailboxes(self.addresses))

    def start(self, timeout: float = 30.0) -> None:
        why = self.available()
        if why is not None:
            raise PeerSetupError(why)
        self.write()
        # Creates the queue's subdirectories with Postfix's own owners and modes.
        self._postfix("set-permissions")
        self._postfix("check")
        self._postfix("start")
        if not wait_for_port("127.0.0.1", self.smtp_port, timeout):
            self.stop()
            raise PeerSetupError(f"postfix did not listen on {self.smtp_port}:\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        try:
            pid = int(self.layout.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def queue_empty(self) -> bool:
        """Nothing left in the incoming, active or deferred queue."""
        for q in ("incoming", "active", "deferred", "maildrop"):
            d = self.layout.queue_dir / q
            if d.is_dir() and any(True for _ in _walk_files(d)):
                return False
        return True

    def stop(self, timeout: float = 20.0) -> None:
        pid = self.pid
        if pid is None:
            return
        self._postfix("stop", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid is not None:
            time.sleep(0.1)
        if self.pid is not None:
            self._postfix("abort", check=False)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.layout.maillog.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.layout.root, ignore_errors=True)


def _walk_files(d: Path) -> list[Path]:
    out: list[Path] = []
    for root, _dirs, files in os.walk(d):
        out.extend(Path(root) / f for f in files)
        if out:
            break
    return out
