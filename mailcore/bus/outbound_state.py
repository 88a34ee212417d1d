"""The relay's record of one outbound message in the ``RELAY_QUEUE`` KV bucket (key = mail
id): attempts so far, recipients delivered or bounced, the last remote answer, the next
attempt, whether a delay warning went out, which delivery of which stream copy was last
attempted, and (for a retry) the destinations of a transaction in progress. A redelivery
that finds fewer attempts recorded than JetStream made means a relay died
mid-transaction: the mail may arrive twice (RFC 5321 §6.1). A message delivered on its
first attempt gets no record at all. ``mailctl queue`` reads the same records.

A retry only goes to the recipients not yet done, so two relays, a restart or an
operator's retry never send one recipient a message twice once its answer is recorded.

Who starts work on a record — a relay marking a retry in flight, ``mailctl queue
retry|bounce`` taking the message over — does so with :func:`claim`, a write that only
succeeds when the record is still the revision that party read (or, with none read,
still absent): of a relay and an operator acting at the same instant, one wins and the
other sees :class:`StateChanged`, instead of both going ahead and the mail going out
twice.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

STATE_VERSION = 1


class StateChanged(Exception):
    """The record changed since it was read: someone else is acting on the message."""


@dataclass(slots=True)
class QueueState:
    id: str
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    received_at: float = 0.0
    attempts: int = 0
    done: list[str] = field(default_factory=list)  # accepted by the remote side
    bounced: dict[str, str] = field(default_factory=dict)  # recipient -> answer
    deferred: dict[str, str] = field(default_factory=dict)  # recipient -> last answer
    last_answer: str = ""
    next_attempt: float = 0.0
    warned: bool = False
    inflight: list[str] = field(default_factory=list)  # destinations being talked to now
    bounce_requested: bool = False  # `mailctl queue bounce`
    seq: int = 0  # the stream sequence of the copy last attempted
    last_delivery: int = 0  # and which delivery of it that was (JetStream's count)
    v: int = STATE_VERSION
    revision: int = field(default=0, compare=False)  # KV revision read; not stored

    def pending(self) -> list[str]:
        finished = set(self.done) | set(self.bounced)
        return [r for r in self.recipients if r not in finished]

    def encode(self) -> bytes:
        data = asdict(self)
        del data["revision"]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> QueueState:
        data = json.loads(value)
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unknown queue state version {data.get('v')!r}")
        data.pop("revision", None)
        return cls(**data)


def state_key(mail_id: str) -> str:
    """The mail id in base64url: KV keys allow ``[-/_=.a-zA-Z0-9]`` and no leading,
    trailing or doubled dot, and this keeps distinct ids distinct."""
    return base64.urlsafe_b64encode(mail_id.encode()).rstrip(b"=").decode("ascii") or "_"


async def load(kv: KeyValue, mail_id: str) -> QueueState | None:
    try:
        entry = await kv.get(state_key(mail_id))
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    state = QueueState.decode(entry.value)
    state.revision = int(entry.revision or 0)
    return state


async def save(kv: KeyValue, state: QueueState) -> None:
    state.revision = await kv.put(state_key(state.id), state.encode())


async def claim(kv: KeyValue, state: QueueState) -> None:
    """Write ``state`` only if the record is still the one it was read from (none read:
    still absent); else :class:`StateChanged`."""
    key, value = state_key(state.id), state.encode()
    try:
        if state.revision:
            state.revision = await kv.update(key, value, last=state.revision)
        else:
            state.revision = await kv.create(key, value)
    except KeyWrongLastSequenceError:
        raise StateChanged(state.id) from None


async def forget(kv: KeyValue, mail_id: str) -> None:
    try:
        await kv.purge(state_key(mail_id))
    except KeyNotFoundError:
        pass
