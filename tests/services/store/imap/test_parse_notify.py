"""Parser property tests for NOTIFY (RFC 5465 §8): any well-formed NOTIFY SET parses back
into the groups sent, in any letter case; the rules §5 states are BAD; garbage is only ever
a syntax error."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from services.store.imap import commands as c
from services.store.imap.parse_notify import EVENTS
from services.store.imap.parser import BadSyntax, ParseError, parse

_CASE = st.sampled_from([str.upper, str.lower, lambda w: w])
_NAME = st.text("abcXYZ019-_.", min_size=1, max_size=8).filter(lambda n: n.upper() != "INBOX")
_MESSAGE = ["MessageNew", "MessageExpunge"]
_EVENT_SETS = st.sampled_from(
    [
        [],
        _MESSAGE,
        [*_MESSAGE, "FlagChange"],
        ["MailboxName"],
        ["SubscriptionChange", "MailboxName"],
        [*_MESSAGE, "FlagChange", "MailboxName", "SubscriptionChange"],
        ["AnnotationChange", *_MESSAGE],  # parses; the handler answers BADEVENT
        ["XSomeFutureEvent"],  # event-ext = atom
    ]
)


@st.composite
def _group(draw: st.DrawFn, selected: bool) -> tuple[str, c.NotifyGroup]:
    case: Callable[[str], str] = draw(_CASE)
    if selected:
        kind = draw(st.sampled_from(["SELECTED", "SELECTED-DELAYED"]))
    else:
        kind = draw(st.sampled_from(["INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"]))
    boxes: tuple[str, ...] = ()
    wire = case(kind)
    if kind in ("SUBTREE", "MAILBOXES"):
        boxes = tuple(draw(st.lists(_NAME, min_size=1, max_size=3)))
        one = len(boxes) == 1 and draw(st.booleans())
        wire += " " + (boxes[0] if one else "(" + " ".join(boxes) + ")")
    events: list[str] = draw(_EVENT_SETS)
    if not events:
        return wire + " NONE", c.NotifyGroup(kind, boxes, ())
    words = [case(e) for e in events]
    atts: tuple[c.FetchAtt, ...] = ()
    if selected and "MessageNew" in events and draw(st.booleans()):
        words[events.index("MessageNew")] += " (UID FLAGS)"
        atts = (c.FetchAtt("UID"), c.FetchAtt("FLAGS"))
    # known names come back in the RFC's spelling, unknown ones as sent
    names = tuple(EVENTS.get(w.upper(), w) for w in (case(e) for e in events))
    return f"{wire} ({' '.join(words)})", c.NotifyGroup(kind, boxes, names, atts)


@given(
    st.lists(_group(False), max_size=3),
    st.none() | _group(True),
    st.booleans(),
    st.integers(0, 3),
)
def test_notify_set_round_trip(
    others: list[tuple[str, c.NotifyGroup]],
    sel: tuple[str, c.NotifyGroup] | None,
    status: bool,
    where: int,
) -> None:
    groups = list(others)
    if sel is not None:
        groups.insert(min(where, len(groups)), sel)
    if not groups:
        groups = [("INBOXES NONE", c.NotifyGroup("INBOXES", (), ()))]
    wire = "n NOTIFY SET" + (" STATUS" if status else "")
    wire += "".join(f" ({w})" for w, _ in groups)
    r = parse(wire.encode())
    assert r.name == "NOTIFY"
    assert r.args == c.Notify(tuple(g for _, g in groups), status)


def test_notify_none() -> None:
    assert parse(b"a NOTIFY NONE").args == c.Notify(None)
    assert parse(b"a notify none").args == c.Notify(None)


@given(
    st.sampled_from(
        [
            "(PERSONAL (MessageNew))",  # §5: MessageNew without MessageExpunge
            "(PERSONAL (MessageExpunge))",
            "(SELECTED (FlagChange))",  # FlagChange alone
            "(INBOXES (MessageNew (UID) MessageExpunge))",  # fetch-att only for SELECTED
            "(SELECTED NONE) (SELECTED-DELAYED NONE)",  # one selected filter at most
            "(SUBTREE (MessageNew MessageExpunge))",  # SUBTREE needs mailboxes
            "(MAILBOXES () (MessageNew MessageExpunge))",
            "(PERSONAL ())",
            "(PERSONAL)",
            "(ELSEWHERE NONE)",
            "",
        ]
    )
)
def test_notify_rules_are_bad(groups: str) -> None:
    try:
        parse(f"a NOTIFY SET {groups}".rstrip().encode())
    except BadSyntax as exc:
        assert exc.tag == "a"
    else:
        raise AssertionError(f"parsed: {groups}")


@given(st.binary(max_size=60))
def test_notify_garbage_is_only_a_syntax_error(tail: bytes) -> None:
    try:
        r = parse(b"a NOTIFY " + tail)
    except ParseError:
        return
    assert isinstance(r.args, c.Notify)
