"""``mailctl journal tail ACCOUNT`` and ``mailctl journal readers``: an account's journal
and the readers following it, read from the store's data directory (read-only; safe
while the store runs)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import click

from mailcore.config import StoreSettings, load_settings
from mailcore.directory import Directory, NoSuchUser
from mailcore.mailstore import ChangeLogTruncated, InvalidAccountId, offline, store_root
from mailcore.mailstore.layout import account_dir
from mailcore.mailstore.records import ReaderPosition, Record
from services.ctl.nats_cli import fail, nats_option, with_directory


def _root(data: Path | None) -> Path:
    s = load_settings(StoreSettings, **({"data": data} if data is not None else {}))
    return store_root(s.data)


def _account(account: str, data: Path | None, nats_url: str) -> tuple[str, Path]:
    """An address (looked up in the directory on NATS) or an account id."""
    account_id = account
    if "@" in account:

        async def go(dr: Directory) -> str:
            u = dr.user(account)
            if u is None:
                raise NoSuchUser(f"no user {account}")
            return u.account_id

        account_id = with_directory(nats_url, go)
    try:
        return account_id, account_dir(_root(data), account_id)
    except InvalidAccountId:
        fail(f"{account!r} is neither an address nor an account id")


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fields(rec: Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(rec):
        value = getattr(rec, f.name)
        if f.name in ("seq", "at"):
            continue
        if isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _line(rec: Record) -> str:
    parts = []
    for name, value in _fields(rec).items():
        if value is None:
            continue
        shown = value
        if isinstance(value, list):
            shown = "(" + " ".join(str(v) for v in value) + ")"
        elif isinstance(value, str) and (not value or " " in value):
            shown = json.dumps(value)
        parts.append(f"{name}={shown}")
    return f"{rec.seq:>8}  {_when(rec.at)}  {rec.kind:<15} " + " ".join(parts)


@click.group()
def journal() -> None:
    """An account's journal of changes and its readers."""


_data = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="the store's data directory (env POSTERN_DATA, default ./var)",
)


@journal.command("tail")
@click.argument("account")
@click.option("-n", "--lines", "count", default=20, show_default=True, help="records to show")
@click.option("--after", type=int, default=None, help="the records after this seq instead")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per record")
@_data
@nats_option
def tail(  # noqa: PLR0917 (click passes every option by keyword)
    account: str, count: int, after: int | None, as_json: bool, data: Path | None, nats_url: str
) -> None:
    """Print the newest records of ACCOUNT's journal (an address or an account id)."""
    account_id, path = _account(account, data, nats_url)
    try:
        head, records = offline.tail(path, max(count, 0), after)
    except FileNotFoundError:
        fail(f"no mail for account {account_id} at {path}")
    except (sqlite3.Error, ChangeLogTruncated) as exc:
        fail(f"cannot read the journal of {account_id}: {exc}")
    for rec in records:
        if as_json:
            click.echo(json.dumps({"seq": rec.seq, "at": rec.at, "kind": rec.kind, **_fields(rec)}))
        else:
            click.echo(_line(rec))
    if not as_json and not records:
        click.echo(f"no records (journal head {head})")


def _reader_line(account_id: str, r: ReaderPosition, now: float) -> str:
    state = "RESYNC" if r.resync else "ok"
    age = f"{now - r.confirmed_at:.0f}s ago"
    return (
        f"{account_id}  {r.name}  position={r.position} behind={r.behind} confirmed={age} {state}"
    )


@journal.command("readers")
@click.argument("account", required=False)
@_data
@nats_option
def readers_cmd(account: str | None, data: Path | None, nats_url: str) -> None:
    """List the journal readers (of ACCOUNT, or of every account) and how far behind
    each is; RESYNC: it fell beyond the journal's ceiling and must copy afresh."""
    if account is not None:
        found = [_account(account, data, nats_url)]
    else:
        found = offline.accounts(_root(data))
    now = time.time()
    shown = 0
    for account_id, path in found:
        try:
            positions = offline.reader_positions(path)
        except FileNotFoundError:
            fail(f"no mail for account {account_id} at {path}")
        except sqlite3.Error as exc:
            fail(f"cannot read the journal readers of {account_id}: {exc}")
        for r in positions:
            click.echo(_reader_line(account_id, r, now))
            shown += 1
    if not shown:
        click.echo("no journal readers")


__all__ = ["journal"]
