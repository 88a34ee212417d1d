"""The NATS server's side of per-service credentials and TLS (docs/security.md).

* One password per NATS user (mailcore.bus.permissions: filter, relay, store, webmail,
  mirror, mailctl), made once, kept in a file of its own (mode 0600); the server's
  configuration holds only its bcrypt hash and the user's publish/subscribe allow lists.
* A CA and a server certificate for NATS over TLS (the names the services dial).
* For a cluster (compose's ``ha``), the routes' TLS: a CA of the cluster's own and the
  route certificate every node presents and checks its peers' against.

``mailctl up`` calls these on its data directory; compose's ``certs`` job runs
``mailctl nats-auth`` to write the same into the volumes the containers mount.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from mailcore.bus.permissions import MIRROR_NODES, Permissions, roles
from services.ctl import natscerts

# nats-server checks the hash on every connection (and reconnection storm). The passwords
# are 192 random bits, which no cost factor would make easier or harder to guess: the hash
# only keeps them out of the server's configuration. Cost 11 took 3-5 s per connection on
# a loaded 2-core machine (clients time out and retry); cost 6 takes milliseconds.
BCRYPT_ROUNDS = 6


def ensure_passwords(users: Path) -> dict[str, str]:
    """Every role's password, read from ``users/<user>`` or made (random, 0600) once."""
    out: dict[str, str] = {}
    for user in roles():
        path = users / user
        if not path.exists():
            natscerts.write_private(path, (secrets.token_urlsafe(24) + "\n").encode())
        out[user] = path.read_text().strip()
    return out


def _quoted(text: str) -> str:
    # a JSON string is a NATS configuration string; quoting also keeps "$" literal
    return json.dumps(text)


def _allow(subjects: tuple[str, ...]) -> str:
    return "{allow: [" + ", ".join(_quoted(s) for s in subjects) + "]}"


def _user(name: str, password: str, perms: Permissions) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
    return (
        f"    {{user: {_quoted(name)}, password: {_quoted(hashed)}, permissions: {{\n"
        f"      publish: {_allow(perms.publish)}\n"
        f"      subscribe: {_allow(perms.subscribe)}\n"
        + ("      allow_responses: true\n" if perms.allow_responses else "")
        + "    }}"
    )


def authorization_block(
    passwords: dict[str, str], mirror_nodes: tuple[str, ...] = MIRROR_NODES
) -> str:
    """The server's ``authorization`` section: every user, bcrypt-hashed, with its
    allow lists. A connection without a known user and password is refused.
    ``mirror_nodes``: every store a mirror queues records for (the pair and any
    followers, ``POSTERN_MIRROR_FOLLOWERS``): each queue ``MIRROR_TO_<NODE>`` is named."""
    perms = roles(mirror_nodes)
    users = [_user(name, passwords[name], perms[name]) for name in perms]
    return "authorization {\n  users = [\n" + "\n".join(users) + "\n  ]\n}\n"


@dataclass(frozen=True, slots=True)
class ServerTls:
    ca: Path
    cert: Path
    key: Path

    def block(self) -> str:
        """The server's ``tls`` section: clients must talk TLS (plain is refused)."""
        return (
            "tls {\n"
            f"  cert_file: {_quoted(str(self.cert))}\n"
            f"  key_file: {_quoted(str(self.key))}\n"
            "  timeout: 5\n"
            "}\n"
        )


def ensure_server_tls(directory: Path, hostnames: list[str]) -> ServerTls:
    """A CA (``ca.pem``) and a server certificate it signed for ``hostnames`` plus
    localhost and 127.0.0.1 (``server.pem``, ``server-key.pem``), made once."""
    tls = ServerTls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    natscerts.issue(
        natscerts.Bundle(tls.ca, tls.cert, tls.key), "Postern NATS CA", hostnames, natscerts.SERVER
    )
    return tls


@dataclass(frozen=True, slots=True)
class RouteTls:
    ca: Path
    cert: Path
    key: Path

    def block(self) -> str:
        """The ``tls`` section of a node's ``cluster`` block: routes talk TLS only; a node
        presents the route certificate and accepts a route only from a peer whose
        certificate the cluster CA signed (``verify``), checking the name it dialled."""
        return (
            "tls {\n"
            f"  cert_file: {_quoted(str(self.cert))}\n"
            f"  key_file: {_quoted(str(self.key))}\n"
            f"  ca_file: {_quoted(str(self.ca))}\n"
            "  verify: true\n"
            "  timeout: 5\n"
            "}\n"
        )


def ensure_route_tls(directory: Path, hostnames: list[str]) -> RouteTls:
    """The cluster's own CA (``cluster-ca.pem``, apart from the clients' ``ca.pem``) and
    the route certificate it signed for ``hostnames`` plus localhost and 127.0.0.1, for
    server and client use (``route.pem``, ``route-key.pem``), made once."""
    tls = RouteTls(
        directory / "cluster-ca.pem", directory / "route.pem", directory / "route-key.pem"
    )
    natscerts.issue(
        natscerts.Bundle(tls.ca, tls.cert, tls.key),
        "Postern NATS cluster CA",
        hostnames,
        natscerts.ROUTE,
    )
    return tls


def server_config(
    passwords: dict[str, str] | None,
    tls: ServerTls | None,
    mirror_nodes: tuple[str, ...] = MIRROR_NODES,
) -> str:
    """What a server's configuration adds for credentials and TLS (either may be off)."""
    parts = []
    if passwords is not None:
        parts.append(authorization_block(passwords, mirror_nodes))
    if tls is not None:
        parts.append(tls.block())
    return "".join(parts)


def write_deployment(
    conf_dir: Path,
    secrets_dir: Path,
    hostnames: list[str],
    mirror_nodes: tuple[str, ...] = MIRROR_NODES,
) -> list[str]:
    """Compose's ``certs`` job: the server side in ``conf_dir`` (``auth.conf`` with every
    user's hash and the TLS section; ``cluster.conf``, the routes' TLS section a cluster
    node includes in its ``cluster`` block; ``users/`` with the passwords, ``tls/``), and
    for each user ``secrets_dir/<user>/password`` and ``ca.pem``: one volume per service,
    so a container holds its own password only. Passwords and certificates are made once
    and kept; the configuration is written again on every run. Returns the users."""
    passwords = ensure_passwords(conf_dir / "users")
    tls = ensure_server_tls(conf_dir / "tls", hostnames)
    routes = ensure_route_tls(conf_dir / "tls", hostnames)
    config = server_config(passwords, tls, mirror_nodes)
    natscerts.write_private(conf_dir / "auth.conf", config.encode())
    natscerts.write_private(conf_dir / "cluster.conf", routes.block().encode())
    for user, password in passwords.items():
        own = secrets_dir / user
        natscerts.write_private(own / "password", (password + "\n").encode())
        (own / "ca.pem").write_bytes(tls.ca.read_bytes())
    return list(passwords)
