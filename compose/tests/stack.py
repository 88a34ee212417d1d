"""A compose deployment under test: a unique project name, free host ports, torn down with
its volumes. Driven with Debian's docker-compose 1.29 (or `docker compose`)."""

from __future__ import annotations

import imaplib
import ipaddress
import json
import os
import random
import re
import shutil
import smtplib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path

COMPOSE_DIR = Path(__file__).resolve().parent.parent
# the default stack's replicas: every scalable service more than once
SCALE = ("--scale", "filter=3", "--scale", "relay=2", "--scale", "webmail=2")
PORT_NAMES = (
    "SMTP", "SUBMISSION", "SUBMISSIONS", "WEBMAIL", "IMAP", "IMAPS", "POP3", "POP3S",
    "MIRROR_IMAP", "MIRROR_POP3", "PROMETHEUS",
)  # fmt: skip
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
ENV = """\
POSTERN_HOSTNAME=mx.compose.test
POSTERN_ALLOW_PLAINTEXT_AUTH=always
POSTERN_DKIM_VERIFY=false
POSTERN_INBOUND_MAX_BYTES=268435456
POSTERN_BODIES_MAX_BYTES=268435456
POSTERN_OUTBOUND_MAX_BYTES=67108864
POSTERN_MIRROR_MAX_BYTES=67108864
POSTERN_RELAY_ROUTES={"remote.test": "sink:2525"}
POSTERN_RELAY_RETRY_SCHEDULE=[2]
"""


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def free_subnet() -> str:
    """A /24 for the stack's internal backend network that no Docker network uses yet,
    outside Docker's default address pools (172.17-172.31.0.0/16, 192.168.0.0/16): the
    project's `default` network is made first, from those pools, and once took
    172.30.0.0/16 over a 172.30.x.0/24 chosen here ("Pool overlaps", CI rehearsal)."""
    ids = subprocess.run(
        ["docker", "network", "ls", "-q"], capture_output=True, text=True, check=True
    ).stdout.split()
    used = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    taken = [ipaddress.ip_network(n) for n in used if "." in n]
    for third in random.sample(range(256), 256):
        net = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise AssertionError("no free 10.213.x.0/24 for the backend network")


def remove_stale(prefix: str = "postern-ct-", max_age: float = 3600.0) -> list[str]:
    """Projects of an earlier run that died before tearing down (older than ``max_age``
    seconds, so a run going on beside this one is left alone): their containers, networks
    and volumes are removed."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    stale: set[str] = set()
    now = time.time()
    for info in json.loads(subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout) if ids else []:  # fmt: skip
        project = info["Config"]["Labels"].get("com.docker.compose.project", "")
        created = datetime.fromisoformat(info["Created"][:19]).replace(tzinfo=UTC).timestamp()
        if project.startswith(prefix) and now - created > max_age:
            stale.add(project)
    for project in sorted(stale):
        label = f"label=com.docker.compose.project={project}"
        for kind in ("ps -aq", "network ls -q", "volume ls -q"):
            found = subprocess.run(
                ["docker", *kind.split(), "--filter", label], capture_output=True, text=True
            ).stdout.split()
            if found:
                rm = {"ps": ["rm", "-f"], "network": ["network", "rm"], "volume": ["volume", "rm"]}
                subprocess.run(["docker", *rm[kind.split()[0]], *found], capture_output=True)
    return sorted(stale)


class Stack:
    def __init__(self, tmp: Path, files: Iterable[str] = ("compose.yaml",), profiles=()) -> None:
        self.project = f"postern-ct-{uuid.uuid4().hex[:8]}"
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        env_file = tmp / f"{self.project}.env"
        env_file.write_text(ENV)
        self.backend_subnet = free_subnet()
        self.env = {
            **os.environ,
            "ENV_FILE": str(env_file),
            "PUBLISH_ADDR": "127.0.0.1",
            "BACKEND_SUBNET": self.backend_subnet,
        }
        self.env.update({f"PUBLISH_{k}": str(v) for k, v in self.ports.items()})
        self.base = [*compose_command(), "-p", self.project]
        for f in files:
            self.base += ["-f", str(COMPOSE_DIR / f)]
        for p in profiles:
            self.base += ["--profile", p]

    def compose(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [*self.base, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def up(self, *args: str) -> None:
        try:
            self.compose("up", "-d", "--no-build", *args)
        except AssertionError as exc:  # say which container was unhealthy, and why
            raise AssertionError(f"{exc}\n{self.health_report()}") from None
        self.wait_healthy()

    def health_report(self) -> str:
        lines = []
        for cid in self.containers():
            info = self.inspect(cid)
            health = info["State"].get("Health") or {}
            last = (health.get("Log") or [{}])[-1].get("Output", "").strip()
            lines.append(f"{info['Name']} {health.get('Status', info['State']['Status'])} {last}")
        return "\n".join(lines)

    def down(self) -> None:
        """Containers, networks and volumes, of every profile (and the test's sink)."""
        subprocess.run(["docker", "rm", "-f", self.sink_name], capture_output=True, timeout=120)
        every = ["--profile", "mirror", "--profile", "monitoring"]
        subprocess.run(
            [*self.base, *every, "down", "-v", "--remove-orphans", "-t", "5"],
            env=self.env,
            capture_output=True,
            timeout=600,
        )

    def containers(self, service: str | None = None) -> list[str]:
        """The project's containers (of one service), whatever their profile."""
        cmd = [
            "docker",
            "ps",
            "-a",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
        ]
        if service:
            cmd += ["--filter", f"label=com.docker.compose.service={service}"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()

    def inspect(self, cid: str) -> dict:
        out = subprocess.run(
            ["docker", "inspect", cid], capture_output=True, text=True, check=True
        ).stdout
        return dict(json.loads(out)[0])

    def wait_healthy(self, deadline: float = 300.0) -> None:
        """Every running container reports healthy (one-shot jobs exited 0)."""
        end = time.monotonic() + deadline
        while True:
            states = {}
            for cid in self.containers():
                st = self.inspect(cid)["State"]
                name = self.inspect(cid)["Name"]
                if st["Status"] == "exited" and st["ExitCode"] == 0:
                    continue
                states[name] = st.get("Health", {}).get("Status", st["Status"])
            if states and all(s == "healthy" for s in states.values()):
                return
            if time.monotonic() > end:
                raise AssertionError(f"not healthy: {states}\n{self.compose('logs', '--tail=30')}")
            time.sleep(2)

    def mailctl(self, *args: str, stdin: str | None = None) -> str:
        return self.compose("exec", "-T", "nats", "mailctl", *args, stdin=stdin)

    def metric(self, cid: str, name: str, port: int = 9101, labels: str = "") -> float:
        """Sum of a counter's samples (those whose labels contain ``labels``), read inside
        the container from its ops port."""
        code = (
            "import urllib.request;"
            f"print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
        )
        out = subprocess.run(
            ["docker", "exec", cid, "python3", "-c", code],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pattern = rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+]+)$"
        return sum(float(v) for lab, v in re.findall(pattern, out, re.M) if labels in lab)

    def send(self, subject: str, body: str = "hello", rcpt: str = "alice@compose.test") -> int:
        """One message over a fresh connection to HAProxy; the final reply code."""
        msg = (
            f"From: bob@ext.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Date: {formatdate()}\r\nMessage-ID: <{subject}@ext.test>\r\n\r\n{body}\r\n"
        )
        try:
            with smtplib.SMTP("127.0.0.1", self.ports["SMTP"], timeout=60) as s:
                s.ehlo("client.ext.test")
                s.sendmail("bob@ext.test", [rcpt], msg.encode())
                return 250
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code
        except smtplib.SMTPRecipientsRefused as exc:
            return next(iter(exc.recipients.values()))[0]
        except (OSError, smtplib.SMTPException):
            return 0

    def subjects(
        self, user: str = "alice@compose.test", password: str = "secret-pw", port: str = "IMAP"
    ) -> list[str]:
        """Subjects of every message in the user's INBOX and Junk, duplicates kept
        (``port``: MIRROR_IMAP reads the mirror profile's second store)."""
        found: list[str] = []
        with imaplib.IMAP4("127.0.0.1", self.ports[port], timeout=60) as m:
            m.login(user, password)
            for box in ("INBOX", "Junk"):
                status, count = m.select(box, readonly=True)
                if status != "OK" or count[0] in (b"0", None):
                    continue
                _, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                for item in data:
                    if isinstance(item, tuple):
                        line = item[1].decode().strip()
                        found.append(line.partition(":")[2].strip())
        return found

    def inbox_uids(self, port: str, user: str = "alice@compose.test") -> tuple[int, dict[str, int]]:
        """INBOX's UIDVALIDITY and each message's UID by subject, over IMAP at ``port``."""
        with imaplib.IMAP4("127.0.0.1", self.ports[port], timeout=60) as m:
            m.login(user, "secret-pw")
            m.select("INBOX", readonly=True)
            _, status = m.status("INBOX", "(UIDVALIDITY)")
            uidvalidity = int(re.findall(rb"UIDVALIDITY (\d+)", status[0] or b"")[0])
            _, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            uids = {}
            for item in data:
                if isinstance(item, tuple):
                    uid = int(re.findall(rb"UID (\d+)", item[0])[0])
                    uids[item[1].decode().strip().partition(":")[2].strip()] = uid
        return uidvalidity, uids

    def wait_delivered(
        self, wanted: set[str], deadline: float = 180.0, port: str = "IMAP"
    ) -> list[str]:
        """Subjects in the mailbox once every wanted one arrived (or the deadline passed)."""
        end = time.monotonic() + deadline
        while True:
            try:
                got = self.subjects(port=port)
            except imaplib.IMAP4.error:  # e.g. the account not on the second store yet
                if time.monotonic() > end:
                    raise
                time.sleep(2)
                continue
            if wanted <= set(got) or time.monotonic() > end:
                return got
            time.sleep(2)

    def send_until_accepted(self, subject: str, attempts: int = 30) -> int:
        """Like an MTA: a temporary refusal (4xx, lost connection) is retried after 2 s."""
        code = 0
        for _ in range(attempts):
            code = self.send(subject)
            if code == 250 or code >= 500:
                return code
            time.sleep(2)
        return code

    @property
    def sink_name(self) -> str:
        return f"{self.project}-sink"

    def start_sink(self) -> str:
        """A remote MX for the relay: aiosmtpd (from the postern image) on the stack's own
        network as `sink` (POSTERN_RELAY_ROUTES sends remote.test there), printing every
        message it receives to its log."""
        network = f"{self.project}_default"
        subprocess.run(
            ["docker", "run", "-d", "--name", self.sink_name, "--network", network,
             "--network-alias", "sink", "postern:latest",
             "python", "-m", "aiosmtpd", "-n", "-l", "0.0.0.0:2525",
             "-c", "aiosmtpd.handlers.Debugging", "stdout"],
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        return self.sink_name

    def sink_log(self) -> str:
        proc = subprocess.run(
            ["docker", "logs", self.sink_name], capture_output=True, text=True, check=True
        )
        return proc.stdout + proc.stderr

    def submit(self, subject: str, rcpt: str, user: str = "alice@compose.test") -> int:
        """One message submitted with AUTH through HAProxy's submission port."""
        msg = (
            f"From: {user}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Date: {formatdate()}\r\nMessage-ID: <{subject}@compose.test>\r\n\r\nout\r\n"
        )
        try:
            with smtplib.SMTP("127.0.0.1", self.ports["SUBMISSION"], timeout=60) as s:
                s.ehlo("laptop.compose.test")
                s.login(user, "secret-pw")
                s.sendmail(user, [rcpt], msg.encode())
                return 250
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code
        except smtplib.SMTPRecipientsRefused as exc:
            return next(iter(exc.recipients.values()))[0]
