"""The local mirrored pair of ``mailctl up --mirror``, as other ``mailctl`` commands find it.

``mailctl up --mirror`` writes ``<data>/mirror/pair.json`` while it runs: per store its
node name, NATS URL, IMAP and POP3 ports and ops URL. ``mailctl status``, ``mailctl
mirror status|promote`` and ``mailctl probe`` run from the same environment (the same
``POSTERN_DATA``) read it for their defaults, so they find both stores.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mailcore.config import ClusterSettings, load_settings


@dataclass(frozen=True)
class PairStore:
    node: str
    nats: str
    imap: int
    pop3: int
    ops: str


def pair_file(data: Path) -> Path:
    return data / "mirror" / "pair.json"


def write(data: Path, stores: list[PairStore]) -> Path:
    path = pair_file(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stores": [asdict(s) for s in stores]}, indent=1) + "\n")
    return path


def read(data: Path | None = None) -> list[PairStore]:
    """The running local pair, or [] when ``mailctl up --mirror`` is not running here."""
    root = data if data is not None else load_settings(ClusterSettings).data.resolve()
    try:
        raw = json.loads(pair_file(root).read_text())
    except (OSError, ValueError):
        return []
    return [PairStore(**s) for s in raw.get("stores", [])]


def peer_of(nats_url: str) -> PairStore | None:
    """The other store of the local pair, seen from the store on ``nats_url``."""
    stores = read()
    if len(stores) == 2 and nats_url in (stores[0].nats, stores[1].nats):
        return stores[1] if stores[0].nats == nats_url else stores[0]
    return None


def remove(data: Path) -> None:
    pair_file(data).unlink(missing_ok=True)


__all__ = ["PairStore", "pair_file", "peer_of", "read", "remove", "write"]
