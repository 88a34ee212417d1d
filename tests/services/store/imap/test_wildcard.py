"""LIST/LSUB patterns (RFC 3501 §6.3.8): the linear matcher agrees with a plain recursive
definition, and hostile patterns cost no more than harmless ones."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from services.store.imap.handlers.mailbox import pattern_matcher
from services.store.imap.wildcard import Pattern
from tests.services.store.imap.conftest import ImapHarness


def reference(pattern: str, name: str) -> bool:
    """The definition, straight: ``*`` any run, ``%`` any run without "/"."""

    @functools.cache
    def at(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(name)
        ch = pattern[i]
        if ch == "*":
            return at(i + 1, j) or (j < len(name) and at(i, j + 1))
        if ch == "%":
            return at(i + 1, j) or (j < len(name) and name[j] != "/" and at(i, j + 1))
        return j < len(name) and name[j] == ch and at(i + 1, j + 1)

    return at(0, 0)


@settings(max_examples=3000, deadline=None)
@given(
    st.text(alphabet="ab/*%", max_size=10),
    st.text(alphabet="ab/", max_size=10),
)
def test_matches_the_definition(pattern: str, name: str) -> None:
    assert Pattern(pattern).match(name) == reference(pattern, name)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="aA/*%xINBOXinbox", max_size=12), st.text(alphabet="aI/NBOX", max_size=8))
def test_reference_is_prefixed_and_inbox_folds(pattern: str, name: str) -> None:
    ref, pat = "INBOX/", pattern
    full = ref + pat
    expected = reference("INBOX" + full[5:], name)
    assert pattern_matcher(ref, pat).match(name) == expected
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        assert pattern_matcher("", pattern).match(name) == reference("INBOX" + pattern[5:], name)


def test_examples() -> None:
    cases = [
        ("*", "", True),
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("%/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a/*", "a/b/c", True),
        ("a%c", "abbbc", True),
        ("a%c", "ab/c", False),
        ("**%%*", "x/y", True),
        ("%%", "x/y", False),
        ("", "", True),
        ("", "a", False),
        ("a.b", "a.b", True),
        ("a.b", "axb", False),  # no regex meaning for "."
    ]
    for pattern, name, expected in cases:
        assert Pattern(pattern).match(name) is expected, (pattern, name)
    assert pattern_matcher("", "inbox").match("INBOX")
    assert pattern_matcher("inbox/", "%").match("INBOX/Sub")
    assert not pattern_matcher("", "inboxes").match("INBOX")


def test_hostile_patterns_in_a_child_process() -> None:
    # The regex translation took > 60 s for six "*a" against a 200-character name; these
    # would take longer than the age of the universe. A child process is the hang guard.
    code = """
        from services.store.imap.wildcard import Pattern
        name = "a" * 999 + "b"
        assert not Pattern("*a" * 6).match("a" * 199 + "b")
        assert not Pattern("*a" * 400).match(name)
        assert not Pattern("%a" * 400 + "%").match(name + "/")
        assert Pattern("*a" * 400 + "*").match(name)
        assert Pattern("*%" * 30000 + "b").match(name)
        print("done")
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"


def test_a_pattern_with_more_literals_than_the_name_is_refused_at_once() -> None:
    # structural: the automaton is never run when the literal items outnumber the name's
    # characters (the bound that keeps the work per name within the name's length)
    p = Pattern("*a" * 5000)

    class Counting(str):
        reads = 0

        def __iter__(self):  # type: ignore[no-untyped-def]
            Counting.reads += 1
            return super().__iter__()

    assert not p.match(Counting("a" * 100))
    assert Counting.reads == 0


async def test_list_with_hostile_pattern_answers(imap: ImapHarness) -> None:
    acct = await imap.account()
    long_name = "a" * 200
    await acct.create_mailbox(long_name)
    await acct.set_subscribed(long_name, True)
    c = await imap.raw_login()
    reply = await c.cmd(b'L LIST "" "' + b"*a" * 6 + b'b"', timeout=60)
    assert reply == [b"L OK LIST completed\r\n"]
    reply = await c.cmd(b'L2 LIST "" "*a*a*a*a*a*a"', timeout=60)
    assert b'"/" ' + long_name.encode() + b"\r\n" in b"".join(reply)
    assert reply[-1].startswith(b"L2 OK")
    reply = await c.cmd(b'L3 LSUB "" "' + b"%a" * 6 + b'b"', timeout=60)
    assert reply == [b"L3 OK LSUB completed\r\n"]
    await c.close()
