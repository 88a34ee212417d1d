"""``mailctl``: run the local cluster and manage accounts.

Every error is one clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import click

from mailcore.bus.permissions import MIRROR_NODES
from mailcore.config import StoreSettings, load_settings
from mailcore.logging import setup_logging
from mailcore.tls import ensure_certificate
from services.ctl import accounts, journal, mirror, natsauth, outbound, probe, queue, status
from services.ctl.up import UpError, load_cluster, run_up


def _echo(line: str) -> None:
    click.echo(line, err=line.startswith("!!"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Postern mail system control."""


@main.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="data directory (env POSTERN_DATA, default ./var)",
)
@click.option(
    "--filters",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="filter processes; more than one run behind a local TCP balancer (PROXY v2)",
)
@click.option(
    "--mirror",
    is_flag=True,
    help="also a second store (own data directory and NATS, IMAP 3143, POP3 3110) and the "
    "mirror processes: the mirrored pair (docs/mirror.md)",
)
def up(data: Path | None, filters: int, mirror: bool) -> None:
    """Run the whole cluster locally until Ctrl-C."""
    setup_logging("mailctl", "warning", "console")
    cluster = load_cluster(data)
    cluster.filters = filters
    cluster.mirror = mirror
    try:
        status = asyncio.run(run_up(cluster, _echo))
    except UpError as exc:
        click.echo(f"mailctl up: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # any other start-up failure: one line, no traceback
        click.echo(f"mailctl up: start-up failed: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    sys.exit(status)


@main.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None)
def cert(data: Path | None) -> None:
    """Create a self-signed TLS certificate in the data directory when none exists."""
    s = load_settings(StoreSettings, **({"data": data} if data is not None else {}))
    created = ensure_certificate(s.cert_path, s.key_path, s.hostname)
    state = "created" if created else "already present"
    click.echo(f"{s.cert_path} ({state}); key {s.key_path}")


MIRROR_NODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")  # as POSTERN_MIRROR_NODE


@main.command("nats-auth")
@click.option(
    "--conf",
    "conf_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="the nats-server's side: auth.conf (include it from nats.conf), cluster.conf (a "
    "cluster node includes it in its cluster block), users/, tls/",
)
@click.option(
    "--secrets",
    "secrets_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="one directory per NATS user with its password and the CA (a volume each)",
)
@click.option(
    "--hosts",
    default="nats",
    show_default=True,
    help="comma-separated names the services and the cluster's nodes dial NATS by (the "
    "server and route certificates' names)",
)
@click.option(
    "--mirror-nodes",
    envvar="POSTERN_MIRROR_NODES",
    default=",".join(MIRROR_NODES),
    show_default=True,
    help="comma-separated node names of every store a mirror sends records to: the pair "
    "and any read-only followers (POSTERN_MIRROR_FOLLOWERS); the mirror user may use "
    "the queue MIRROR_TO_<NODE> of each, and no other",
)
def nats_auth(conf_dir: Path, secrets_dir: Path, hosts: str, mirror_nodes: str) -> None:
    """NATS users per service (bcrypt hashes, permissions), TLS and route TLS, for compose."""
    names = [h.strip() for h in hosts.split(",") if h.strip()]
    nodes = tuple(n.strip() for n in mirror_nodes.split(",") if n.strip())
    bad = [n for n in nodes if not MIRROR_NODE.fullmatch(n)]
    if bad or not nodes:
        raise click.BadParameter(
            f"not a store's node name: {', '.join(bad) or '(none)'} (lower-case letters, "
            "digits, - and _, as POSTERN_MIRROR_NODE)",
            param_hint="--mirror-nodes",
        )
    users = natsauth.write_deployment(conf_dir, secrets_dir, names or ["nats"], nodes)
    click.echo(f"{conf_dir / 'auth.conf'}: users {', '.join(users)}; TLS for {', '.join(names)}")


# Account commands (domain, user, alias, path) and status.
accounts.register(main)
main.add_command(status.status)
main.add_command(queue.queue)
main.add_command(journal.journal)
main.add_command(mirror.mirror)
main.add_command(probe.probe)
outbound.register(queue.queue)  # list, show, retry, bounce, delete
