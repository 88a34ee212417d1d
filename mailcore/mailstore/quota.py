"""RFC 9208 quotas: STORAGE (bytes) and MESSAGE (count), per account; 0 = unlimited."""

from __future__ import annotations

from mailcore.mailstore.core import State, Txn
from mailcore.mailstore.errors import QuotaExceeded
from mailcore.mailstore.model import Quota
from mailcore.mailstore.records import QuotaRecord


def fits(state: State, quota: Quota | None, add_bytes: int, add_messages: int) -> bool:
    if quota is None:
        return True
    if quota.bytes and state.usage_bytes + add_bytes > quota.bytes:
        return False
    return not (quota.messages and state.usage_messages + add_messages > quota.messages)


def check(state: State, quota: Quota | None, add_bytes: int, add_messages: int) -> None:
    """Raise :class:`QuotaExceeded` when the addition would pass a limit."""
    if not fits(state, quota, add_bytes, add_messages):
        assert quota is not None
        raise QuotaExceeded(
            f"quota exceeded: {state.usage_bytes + add_bytes} of {quota.bytes or '∞'} bytes, "
            f"{state.usage_messages + add_messages} of {quota.messages or '∞'} messages"
        )


def note(t: Txn, quota: Quota | None) -> None:
    """Journal the account's quota when the directory gives one other than the last
    journalled (every write that checks the quota passes it here)."""
    if quota is None:
        return
    s = t.state
    if quota.bytes != s.quota_bytes or quota.messages != s.quota_messages:
        s.quota_bytes, s.quota_messages = quota.bytes, quota.messages
        t.log(QuotaRecord(t.next_seq(), t.at, quota.bytes, quota.messages))
