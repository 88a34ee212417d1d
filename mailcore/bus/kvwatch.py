"""Following a KV bucket without trusting nats-py's end-of-initial-values marker.

nats-py's watcher puts ``None`` in its queue to say "the initial values are all here". It
decides that from the consumer's ``num_pending`` once the subscription exists, but the
server may already have pushed every value by then: ``num_pending`` is 0, the client has
not yet run a callback, and the marker goes out *before* the values. A process that opened
the directory just after ``mailctl domain add`` then saw no such domain (CI caught it).

Here the initial values end at the bucket's newest revision as read *before* the watch
was made: with deliver-last-per-subject the stream's last message (or a later write of the same
key) always comes through, so reaching that revision means every older key has come too.
The marker is only used as a fallback when the last message is one the watcher drops (a
server marker of a kind nats-py does not know): after it, a short quiet spell ends the wait.
"""

from __future__ import annotations

from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

DELETE_OPERATIONS = frozenset({"DEL", "PURGE"})


class WatchStopped(Exception):
    """The watcher was stopped before the initial values were all read."""


async def last_revision(js: JetStreamContext, bucket: str) -> int:
    """The revision of the bucket's newest stored entry; 0 when it holds none.

    Not the stream's ``last_seq``: after a purge that stays put while the messages are gone,
    and the watch would wait for a revision that never comes.
    """
    try:
        msg = await js.get_msg(f"KV_{bucket}", subject=f"$KV.{bucket}.>")
    except NotFoundError:
        return 0
    return int(msg.seq or 0)


async def initial_values(
    watcher: Any,  # nats-py's KeyWatcher, whose methods are untyped
    last: int,
    *,
    idle_timeout: float = 30.0,
    after_marker: float = 1.0,
) -> dict[str, KeyValue.Entry]:
    """Read ``watcher`` until revision ``last``; the live keys and their entries.

    Raises :class:`nats.errors.TimeoutError` when nothing arrives for ``idle_timeout``
    seconds, and :class:`WatchStopped` if the watcher is stopped meanwhile.
    """
    live: dict[str, KeyValue.Entry] = {}
    if last == 0:
        return live
    marker_seen = False
    while True:
        try:
            entry = await watcher.updates(timeout=after_marker if marker_seen else idle_timeout)
        except NatsTimeoutError:
            if marker_seen:
                return live
            raise
        if entry is None:
            marker_seen = True
            continue
        if not isinstance(entry, KeyValue.Entry):  # nats-py's stop sentinel
            raise WatchStopped("the watch was stopped")
        if entry.operation in DELETE_OPERATIONS:
            live.pop(entry.key, None)
        else:
            live[entry.key] = entry
        if entry.revision is not None and entry.revision >= last:
            return live
