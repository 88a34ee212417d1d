"""Where an account lives on disk. Keyed by the directory's ``User.account_id`` (a safe
lower-case token), never by an address or a mailbox name.

::

    <root>/                    the store root (StoreSettings.data / "mailstore")
      store.lock               held (flock) by the store process that has the root open
      accounts/<account_id>/
        index.sqlite           the account's index (WAL): mailboxes, messages, change log
        msgs/<shard>/<file_id> one file per stored message, raw RFC 5322 bytes
      trash/                   removed accounts, deleted in the background
"""

from __future__ import annotations

import re
from pathlib import Path

from mailcore.mailstore.errors import InvalidAccountId

_ACCOUNT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SHARD_SIZE = 4096  # message files per directory
INDEX_NAME = "index.sqlite"


def store_root(data: Path) -> Path:
    """The mail store below a service's data directory (``POSTERN_DATA``)."""
    return data / "mailstore"


def check_account_id(account_id: str) -> str:
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        raise InvalidAccountId(f"invalid account id {account_id!r}")
    return account_id


def account_dir(root: Path, account_id: str) -> Path:
    return root / "accounts" / check_account_id(account_id)


def index_path(account: Path) -> Path:
    return account / INDEX_NAME


def shard_of(file_id: int) -> int:
    return file_id // SHARD_SIZE


def msgs_dir(account: Path) -> Path:
    return account / "msgs"


def shard_dir(account: Path, shard: int) -> Path:
    return account / "msgs" / f"{shard:06x}"


def message_path(account: Path, file_id: int) -> Path:
    return shard_dir(account, shard_of(file_id)) / str(file_id)


def message_file(msgs: str, file_id: int) -> str:
    """:func:`message_path` as a str below ``msgs`` (``str(msgs_dir(account))``): no
    pathlib objects on the read path (POP3 RETR, IMAP FETCH, SEARCH)."""
    return f"{msgs}/{file_id // SHARD_SIZE:06x}/{file_id}"
