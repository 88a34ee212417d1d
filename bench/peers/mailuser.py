"""The unprivileged account that owns the peers' mail files.

Dovecot refuses to deliver or serve mail as root, so as root the harness uses a dedicated
system user (``vmail``), creating it on a fresh Debian box. Run unprivileged, everything
runs as the invoking user instead (Postfix then cannot run: its master needs root).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from dataclasses import dataclass

MAIL_USER = "vmail"


class PeerSetupError(RuntimeError):
    """A peer cannot be set up on this machine; the message says why."""


@dataclass(frozen=True, slots=True)
class MailUser:
    name: str
    uid: int
    gid: int
    group: str


def _lookup(name: str) -> MailUser | None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return MailUser(
        name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, group=grp.getgrgid(pw.pw_gid).gr_name
    )


def mail_user(create: bool = True) -> MailUser:
    """``vmail`` as root (created when missing), else the invoking user."""
    if os.geteuid() != 0:
        me = _lookup(pwd.getpwuid(os.geteuid()).pw_name)
        assert me is not None
        return me
    found = _lookup(MAIL_USER)
    if found is not None or not create:
        if found is None:
            raise PeerSetupError(f"user {MAIL_USER} does not exist")
        return found
    proc = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "Postern benchmark mail owner",
            MAIL_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = _lookup(MAIL_USER)
    if found is None:
        raise PeerSetupError(f"could not create user {MAIL_USER}: {proc.stderr.strip()}")
    return found


def chown_tree(path: os.PathLike[str] | str, user: MailUser) -> None:
    """Give ``path`` and everything below it to ``user`` (a no-op when unprivileged)."""
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.uid, user.gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
