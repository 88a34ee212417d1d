"""The ledger: every SMTP transaction the load generator tried, and what it was answered.

Each test message carries a unique id in the ``X-Reliability-Id`` header. An entry's
outcome says what the sender may believe:

* ``acked``: 250 to the end of DATA — a promise; the message must be delivered, once.
* ``refused``: a 4xx or 5xx reply — the sender keeps the message; it must not appear.
* ``unknown``: the connection broke after the data was sent and before any reply — the
  sender cannot know, and will retry; the message may appear once or not at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

HEADER = "X-Reliability-Id"


class Outcome(StrEnum):
    ACKED = "acked"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Entry:
    rid: str  # the X-Reliability-Id
    recipients: tuple[str, ...]
    outcome: Outcome
    code: int | None  # the last reply's code; None when the connection broke first
    step: str  # the command that got ``code`` (CONNECT, MAIL, RCPT, DATA, END)
    text: str = ""
    at: float = field(default_factory=time.time)
    # Would a healthy Postern accept this message? Then a 5xx is an internal failure
    # leaking as a permanent refusal (invariant 1: internal failures answer 4xx).
    valid: bool = True

    @property
    def bad_answer(self) -> bool:
        """A valid message refused permanently: internal failure not answered with 4xx."""
        return self.valid and self.code is not None and 500 <= self.code < 600


class Ledger:
    """Thread-safe append-only list of entries, optionally mirrored to a JSON-lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self._entries: list[Entry] = []
        self._lock = threading.Lock()
        self.path = path

    def record(self, entry: Entry) -> None:
        with self._lock:
            self._entries.append(entry)
            if self.path is not None:
                with self.path.open("a") as fh:
                    fh.write(json.dumps(asdict(entry)) + "\n")

    def extend(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.record(e)

    def __iter__(self) -> Iterator[Entry]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for e in self if e.outcome is outcome)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        ledger = cls()
        for line in path.read_text().splitlines():
            raw = json.loads(line)
            raw["outcome"] = Outcome(raw["outcome"])
            raw["recipients"] = tuple(raw["recipients"])
            ledger.record(Entry(**raw))
        return ledger


def outcome_for(step: str, code: int | None) -> Outcome:
    """What a reply (or its absence) at ``step`` tells the sender about the message."""
    if step == "END":
        if code is None:
            return Outcome.UNKNOWN
        return Outcome.ACKED if 200 <= code < 300 else Outcome.REFUSED
    return Outcome.REFUSED  # before the end of DATA nothing was promised
