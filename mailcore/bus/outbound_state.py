"""The relay's record of one outbound message in the ``RELAY_QUEUE`` KV bucket (key = mail
id): attempts so far, recipients delivered or bounced, the last remote answer, the next
attempt, whether a delay warning went out, which delivery of which stream copy was last
attempted, and (for a retry) the destinations of a transaction in progress. A redelivery
that finds fewer attempts recorded than JetStream made means a relay died
mid-transaction: the mail may arrive twice (RFC 5321 §6.1). A message delivered on its
first attempt gets no record at all. ``mailctl queue`` reads the same records.

A retry only goes to the recipients not yet done, so two relays, a restart or an
operator's retry never send one recipient a message twice once its answer is recorded.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

STATE_VERSION = 1


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

    def pending(self) -> list[str]:
        finished = set(self.done) | set(self.bounced)
        return [r for r in self.recipients if r not in finished]

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> QueueState:
        data = json.loads(value)
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unknown queue state version {data.get('v')!r}")
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
    return QueueState.decode(entry.value)


async def save(kv: KeyValue, state: QueueState) -> None:
    await kv.put(state_key(state.id), state.encode())


async def forget(kv: KeyValue, mail_id: str) -> None:
    try:
        await kv.purge(state_key(mail_id))
    except KeyNotFoundError:
        pass
