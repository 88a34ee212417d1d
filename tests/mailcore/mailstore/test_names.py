"""Mailbox name rules (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.mailstore import InvalidMailboxName
from mailcore.mailstore.names import canonical, parents


def test_canonical_forms() -> None:
    assert canonical("inbox") == "INBOX"
    assert canonical("Inbox/Sub") == "INBOX/Sub"
    assert canonical("INBOXES") == "INBOXES"
    assert canonical("../../etc") == "../../etc"
    assert parents("a/b/c") == ["a", "a/b"]


@pytest.mark.parametrize("bad", ["", "a//b", "\0", "x\ty", "a*", "%", "/", "a/ /b"])
def test_refused(bad: str) -> None:
    with pytest.raises(InvalidMailboxName):
        canonical(bad)


@given(st.text(max_size=300))
def test_canonical_never_crashes_and_is_idempotent(name: str) -> None:
    try:
        once = canonical(name)
    except InvalidMailboxName:
        return
    assert canonical(once) == once
    assert "\0" not in once and len(once.encode()) <= 1000
