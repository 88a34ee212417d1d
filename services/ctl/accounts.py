"""``mailctl domain|user|alias|path``: accounts in the directory (JetStream KV).

Passwords come from a prompt or ``--password-stdin``, never from the command line.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click
from nats.errors import NoRespondersError

from mailcore import dkim_keys
from mailcore.bus import names
from mailcore.config import StoreSettings, load_settings
from mailcore.directory import Directory, NoSuchUser
from mailcore.mailstore import store_root
from mailcore.mailstore.layout import account_dir
from services.ctl.nats_cli import CtlError, fail, nats_option, open_bus, run, with_directory

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``0``/``unlimited``, bytes, or a number with K/M/G/T (binary units)."""
    if text.strip().lower() in ("unlimited", "none"):
        return 0
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise click.BadParameter(f"{text!r} is not a size such as 500M or 2G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def human(n: int) -> str:
    if n == 0:
        return "unlimited"
    for unit in ("T", "G", "M", "K"):
        size = _UNITS[unit.lower()]
        if n >= size and n % (size // 1024 or 1) == 0:
            return f"{n / size:g}{unit}"
    return str(n)


def _password(stdin: bool) -> str:
    if stdin:
        line = sys.stdin.readline()
        if not line:
            fail("no password on standard input")
        return line.rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _data_option(fn: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--data",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="the store's data directory (env POSTERN_DATA, default ./var)",
    )(fn)


def _mail_dir(data: Path | None, account_id: str) -> Path:
    s = load_settings(StoreSettings, **({"data": data} if data is not None else {}))
    return account_dir(store_root(s.data), account_id).absolute()


# --- domain ------------------------------------------------------------------------------
@click.group()
def domain() -> None:
    """Local mail domains."""


@domain.command("add")
@click.argument("name")
@click.option("--catch-all", default=None, help="address that gets mail for unknown users")
@nats_option
def domain_add(name: str, catch_all: str | None, nats_url: str) -> None:
    """Add a local domain."""
    d = with_directory(nats_url, lambda dr: dr.add_domain(name, catch_all=catch_all))
    click.echo(f"domain {d.name} added" + (f" (catch-all {d.catch_all})" if d.catch_all else ""))


@domain.command("list")
@nats_option
def domain_list(nats_url: str) -> None:
    """List local domains."""

    async def go(dr: Directory) -> None:
        for d in dr.domains():
            users, aliases = len(dr.users(d.name)), len(dr.aliases(d.name))
            extra = f"  catch-all {d.catch_all}" if d.catch_all else ""
            click.echo(f"{d.name}  {users} users  {aliases} aliases{extra}")

    with_directory(nats_url, go)


@domain.command("dkim")
@click.argument("name")
@click.option("--selector", default=dkim_keys.DEFAULT_SELECTOR, show_default=True)
@click.option("--new", "rotate", is_flag=True, help="replace an existing key")
@nats_option
def domain_dkim(name: str, selector: str, rotate: bool, nats_url: str) -> None:
    """Make the domain's DKIM key (kept in the directory) and print its TXT record."""

    async def go() -> tuple[dkim_keys.DkimKey, bool]:
        bus = await open_bus(nats_url)
        try:
            dr = await Directory.open(bus.js, watch=False)
            if not dr.is_local_domain(name):
                raise CtlError(f"no local domain {name}")
            kv = await bus.js.key_value(names.KV_DIRECTORY)
            key = await dkim_keys.load_key(kv, name)
            if key is not None and not rotate:
                return key, False
            key = dkim_keys.make_key(name, selector)
            await dkim_keys.store_key(kv, key)
            return key, True
        finally:
            await bus.close()

    key, made = run(go)
    state = "created" if made else "existing key (--new replaces it)"
    click.echo(f"DKIM key for {key.domain}, selector {key.selector}: {state}")
    click.echo("Publish this TXT record:")
    txt = key.txt()
    chunks = " ".join(f'"{txt[i : i + 250]}"' for i in range(0, len(txt), 250))
    click.echo(f"{key.record_name}. IN TXT ( {chunks} )")


@domain.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="also remove the domain's users and aliases")
@nats_option
def domain_remove(name: str, force: bool, nats_url: str) -> None:
    """Remove a domain (refused while it has users or aliases, unless --force)."""
    with_directory(nats_url, lambda dr: dr.remove_domain(name, force=force))
    click.echo(f"domain {name.lower()} removed")


# --- user --------------------------------------------------------------------------------
@click.group()
def user() -> None:
    """Mail users (mailboxes)."""


@user.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--quota", "quota_bytes", default="0", help="storage limit, e.g. 2G (0 = none)")
@click.option("--quota-messages", default=0, type=click.IntRange(min=0), help="message limit")
@nats_option
def user_add(
    address: str, password_stdin: bool, quota_bytes: str, quota_messages: int, nats_url: str
) -> None:
    """Add a user; the password is asked for (or read with --password-stdin)."""
    limit = parse_size(quota_bytes)
    password = _password(password_stdin)
    u = with_directory(
        nats_url,
        lambda dr: dr.add_user(address, password, quota_bytes=limit, quota_messages=quota_messages),
    )
    click.echo(f"user {u.address} added (account {u.account_id})")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@nats_option
def user_passwd(address: str, password_stdin: bool, nats_url: str) -> None:
    """Set a user's password."""

    async def exists(dr: Directory) -> None:
        if dr.user(address) is None:  # no password prompt for a user that does not exist
            raise NoSuchUser(f"no user {address}")

    with_directory(nats_url, exists)
    password = _password(password_stdin)
    u = with_directory(nats_url, lambda dr: dr.set_password(address, password))
    click.echo(f"password of {u.address} changed")


@user.command("list")
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@nats_option
def user_list(domain_name: str | None, nats_url: str) -> None:
    """List users (of one domain)."""

    async def go(dr: Directory) -> None:
        for u in dr.users(domain_name):
            quota = f"{human(u.quota_bytes)} / {u.quota_messages or 'unlimited'} messages"
            state = "  disabled" if u.disabled else ""
            click.echo(f"{u.address}  account {u.account_id}  quota {quota}{state}")

    with_directory(nats_url, go)


@user.command("remove")
@click.argument("address")
@click.option("--purge", is_flag=True, help="also erase the user's mail (asks the store)")
@_data_option
@nats_option
def user_remove(address: str, purge: bool, data: Path | None, nats_url: str) -> None:
    """Remove a user. The mail is kept on the store (its directory is printed) unless
    --purge, which has the running store erase the mail (services/store/admin.py)."""
    if purge:

        async def check() -> dict[str, Any]:
            try:
                return await _request_purge(nats_url, {"address": address, "check": True})
            except CtlError as exc:
                raise CtlError(f"{exc}; nothing was removed") from None

        found = run(check)
        u = with_directory(nats_url, lambda dr: dr.remove_user(address))

        async def erase() -> None:
            try:
                await _request_purge(
                    nats_url, {"address": u.address, "account_id": found["account_id"]}
                )
            except (CtlError, TimeoutError) as exc:
                raise CtlError(
                    f"user {u.address} removed, but its mail (account {u.account_id}) was "
                    f"not erased ({str(exc) or 'no answer in time'}); it stays in "
                    f"{_mail_dir(data, u.account_id)}"
                ) from None

        run(erase)
        click.echo(f"user {u.address} removed; mail erased")
        return
    u = with_directory(nats_url, lambda dr: dr.remove_user(address))
    click.echo(f"user {u.address} removed; mail kept in {_mail_dir(data, u.account_id)}")


async def _request_purge(nats_url: str, request: dict[str, Any]) -> dict[str, Any]:
    bus = await open_bus(nats_url)
    try:
        payload = json.dumps(request).encode()
        try:
            msg = await bus.nc.request(names.SUBJECT_STORE_PURGE, payload, timeout=30)
        except NoRespondersError:
            raise CtlError("no store is running to erase the mail") from None
        reply = dict(json.loads(msg.data))
    finally:
        await bus.close()
    if "error" in reply:
        raise CtlError(str(reply["error"]))
    return reply


@user.command("quota")
@click.argument("address")
@click.option("--bytes", "size", default=None, help="new storage limit, e.g. 2G (0 = none)")
@click.option("--messages", default=None, type=click.IntRange(min=0), help="new message limit")
@nats_option
def user_quota(address: str, size: str | None, messages: int | None, nats_url: str) -> None:
    """Show a user's quota, or set it with --bytes/--messages."""
    new_bytes = parse_size(size) if size is not None else None

    async def go(dr: Directory) -> tuple[str, int, int]:
        u = dr.user(address)
        if u is None:
            raise NoSuchUser(f"no user {address}")
        if new_bytes is not None or messages is not None:
            u = await dr.set_quota(
                address,
                quota_bytes=u.quota_bytes if new_bytes is None else new_bytes,
                quota_messages=u.quota_messages if messages is None else messages,
            )
        return u.address, u.quota_bytes, u.quota_messages

    who, qb, qm = with_directory(nats_url, go)
    click.echo(f"{who}: storage {human(qb)}, messages {qm or 'unlimited'}")


# --- alias -------------------------------------------------------------------------------
@click.group()
def alias() -> None:
    """Aliases: addresses that deliver to other addresses."""


@alias.command("add")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@nats_option
def alias_add(address: str, targets: tuple[str, ...], nats_url: str) -> None:
    """Add an alias (or more targets to one)."""
    a = with_directory(nats_url, lambda dr: dr.add_alias(address, list(targets)))
    click.echo(f"alias {a.address} -> {', '.join(a.targets)}")


@alias.command("list")
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@nats_option
def alias_list(domain_name: str | None, nats_url: str) -> None:
    """List aliases (of one domain)."""

    async def go(dr: Directory) -> None:
        for a in dr.aliases(domain_name):
            click.echo(f"{a.address} -> {', '.join(a.targets)}")

    with_directory(nats_url, go)


@alias.command("remove")
@click.argument("address")
@click.argument("targets", nargs=-1)
@nats_option
def alias_remove(address: str, targets: tuple[str, ...], nats_url: str) -> None:
    """Remove an alias, or only some of its targets."""
    with_directory(nats_url, lambda dr: dr.remove_alias(address, list(targets) or None))
    click.echo(f"alias {address.lower()} " + ("targets removed" if targets else "removed"))


# --- path --------------------------------------------------------------------------------
@click.command("path")
@click.argument("address")
@_data_option
@nats_option
def path(address: str, data: Path | None, nats_url: str) -> None:
    """Print the directory that holds a user's mail on the store."""

    async def go(dr: Directory) -> str:
        u = dr.user(address)
        if u is None:
            raise NoSuchUser(f"no user {address}")
        return u.account_id

    click.echo(str(_mail_dir(data, with_directory(nats_url, go))))


def register(main: click.Group) -> None:
    for command in (domain, user, alias, path):
        main.add_command(command)


__all__ = ["CtlError", "register"]
