"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §4), in memory, from the
thread columns of the index (mailcore.mailstore.sortkeys): base subject, reply marker,
sent date, Message-ID and parent chain. No message is parsed at query time.

Nothing here recurses: a thread may be as deep as the mailbox is large (a chain of 20,000
replies each answering the previous), far beyond Python's recursion limit, so every walk
of a tree is a loop over an explicit list or stack."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple


class ThreadRow(NamedTuple):
    uid: int
    subject: str  # base subject, i;unicode-casemap form (mailcore.mailstore.casemap)
    reply: bool
    sent: float
    msg_id: str | None
    refs: tuple[str, ...]


# the columns sqlsearch.rows reads for a ThreadRow
COLUMNS = "uid, k_subject, k_reply, sent_at, msg_id, refs"


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")


def _unquoted(m: re.Match[str]) -> str:
    return _QUOTED_PAIR.sub(r"\1", m.group(1))


def normal_id(msg_id: str) -> str:
    """§4 REFERENCES: a Message ID in a normal form, so that quoting does not tell two
    spellings of one apart: ``"01KF8JCEOCBS0045PS"@xxx.yyy.com`` is
    ``01KF8JCEOCBS0045PS@xxx.yyy.com`` (the quoted strings of the left part unquoted)."""
    if '"' not in msg_id:
        return msg_id
    left, at, right = msg_id.rpartition("@")
    if not at:
        left, right = msg_id, ""
    return _QUOTED.sub(_unquoted, left) + at + right


def _ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    if '"' not in value:  # the rule: one test per row, no call per id
        return tuple(value.split())
    return tuple(normal_id(i) for i in value.split())


def _id(value: str | None) -> str | None:
    return value if value is None or '"' not in value else normal_id(value)


def row_of(r: tuple[object, ...]) -> ThreadRow:
    uid, subject, reply, sent, msg_id, refs = r
    return ThreadRow(
        int(uid),  # type: ignore[call-overload]
        str(subject or ""),
        bool(reply),
        float(sent or 0.0),  # type: ignore[arg-type]
        None if msg_id is None else _id(str(msg_id)),
        _ids(str(refs or "")),
    )


# ORDEREDSUBJECT needs fewer
SUBJECT_COLUMNS = "uid, k_subject, sent_at"


def subject_rows_of(found: Sequence[tuple[Any, ...]]) -> list[ThreadRow]:
    """Rows of :data:`SUBJECT_COLUMNS` (no reply marker, id or references)."""
    return [ThreadRow(u, s or "", False, t or 0.0, None, ()) for u, s, t in found]


def rows_of(found: Sequence[tuple[Any, ...]]) -> list[ThreadRow]:
    """:func:`row_of` for a whole result, without the per-value conversions: the index
    columns already hold int / str / float / NULL (one call per message is most of a
    THREAD's time on a large mailbox, so the usual ids, unquoted, take no call at all)."""
    return [
        ThreadRow(
            u,
            s or "",
            bool(r),
            t or 0.0,
            m if m is None or '"' not in m else normal_id(m),
            () if not f else tuple(f.split()) if '"' not in f else _ids(f),
        )
        for u, s, r, t, m, f in found
    ]


@dataclass(eq=False, slots=True)
class Node:
    """A thread node: a message (``row``) or a dummy standing for a missing parent."""

    row: ThreadRow | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    k: tuple[float, int] = (0.0, 0)  # key(), set by _sort for the whole tree

    @property
    def uid(self) -> int | None:
        return None if self.row is None else self.row.uid

    def key(self) -> tuple[float, int]:
        """§4 (REFERENCES step 6): sent date, then mailbox order; a dummy takes its
        first child's."""
        n = self
        while n.row is None:
            if not n.children:
                return (0.0, 0)
            n = n.children[0]
        return (n.row.sent, n.row.uid)

    def subject_row(self) -> ThreadRow | None:
        return (
            self.row if self.row is not None else (self.children[0].row if self.children else None)
        )


_SUBJECT_ORDER = itemgetter(1, 3, 0)  # ThreadRow (subject, sent, uid)
_UID = itemgetter(0)


def ordered_subject(rows: Sequence[ThreadRow]) -> list[Node]:
    """§4 ORDEREDSUBJECT: messages grouped by base subject, each group ordered by sent
    date; its first message is the parent of all the others; threads by the sent date of
    their first message.

    One pass over the rows in (subject, sent date, UID) order (cheap when the query
    returned them so: sorting sorted input is linear), one node per message and no
    per-group lists: this runs once per THREAD on every message of the mailbox."""
    roots: list[Node] = []
    root: Node | None = None
    subject = ""
    for row in sorted(rows, key=_SUBJECT_ORDER):
        if root is None or row.subject != subject:
            root = Node(row)
            root.k = (row.sent, row.uid)
            roots.append(root)
            subject = row.subject
        else:
            root.children.append(Node(row, root))
    roots.sort(key=_KEY)
    return roots


def _makes_loop(parent: Node, child: Node) -> bool:
    """§4 REFERENCES (1)(A): whether making ``parent`` the parent of ``child`` would make
    a loop, that is whether ``parent`` is ``child`` or one of its descendants.

    Walks up from ``parent`` and down ``child``'s subtree by turns and stops when either
    walk ends, so it costs the smaller of the two: joining two long chains costs the
    shorter, and a new message (no children yet) costs nothing however deep its parent."""
    if parent is child:
        return True
    if not child.children:
        return False
    up = parent.parent
    down = list(child.children)
    while up is not None and down:
        if up is child:
            return True
        up = up.parent
        n = down.pop()
        if n is parent:
            return True
        down.extend(n.children)
    return False  # one walk ended: parent's ancestors, or child's subtree, seen whole


def _link(parent: Node, child: Node) -> None:
    _unlink(child)
    child.parent = parent
    parent.children.append(child)


def _unlink(child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _parents_first_reversed(roots: Sequence[Node]) -> list[Node]:
    """Every node of the trees under ``roots`` that has children, each after all of its
    descendants that have children. Leaves are left out: on a large mailbox most
    messages are threads of their own, and steps 3, 4 and 6 have nothing to do there."""
    out: list[Node] = []
    stack = [n for n in roots if n.children]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(c for c in n.children if c.children)
    out.reverse()
    return out


def references(rows: Sequence[ThreadRow]) -> list[Node]:
    """§4 REFERENCES (steps 1 to 6; the algorithm of J. Zawinski)."""
    table: dict[str, Node] = {}
    nodes: list[Node] = []
    for row in sorted(rows, key=_UID):  # (linear: the query returns them by UID)
        # (1)(A) a message without an id, or whose id an earlier message (lower sequence
        # number) has, gets a unique one: a container of its own, found by no reference
        node = table.get(row.msg_id) if row.msg_id else None
        if node is None or node.row is not None:
            node = Node(row)
            node.k = (row.sent, row.uid)  # §4 step 6 key; a leaf keeps it
            if row.msg_id and row.msg_id not in table:
                table[row.msg_id] = node
        else:
            node.row = row  # the dummy made for this id by an earlier reference
            node.k = (row.sent, row.uid)
        nodes.append(node)
        # (1)(A) link the references in order: a missing one is a dummy, a message that
        # has a parent keeps it, no link makes a loop
        prev: Node | None = None
        for ref in row.refs:
            cur = table.get(ref)
            if cur is None:
                cur = table[ref] = Node()
            if prev is not None and cur.parent is None and not _makes_loop(prev, cur):
                _link(prev, cur)
            prev = cur
        # (1)(B) the last reference is the message's parent: any parent it had is let go
        # (a truncated References made it), then the link is made unless it makes a loop;
        # without references the message has no parent
        if prev is not None and node.parent is prev:
            continue  # linked so already (by an earlier message's references)
        if prev is not None and _makes_loop(prev, node):
            prev = None
        if prev is not None:
            _link(prev, node)
        elif node.parent is not None:
            _unlink(node)
    # (2) the root set: every container without a parent; the table's, then the
    # messages it does not hold (no id, or an id an earlier message has)
    roots = [n for n in table.values() if n.parent is None]
    roots += [
        n
        for n in nodes
        if n.parent is None and (n.row is None or not n.row.msg_id or table[n.row.msg_id] is not n)
    ]
    roots = _prune(roots)  # (3)
    _sort(roots)  # (4), and each dummy's children, which give its subject in (5)
    roots, changed = _merge_subjects(roots)  # (5)
    # (6) every sibling set is sorted since (4) but those (5) added to: all of them
    # under top-level nodes, and messages (a dummy's key is its first child's)
    for n in changed:
        n.children.sort(key=_KEY)
        if n.row is None:
            n.k = n.children[0].k if n.children else (0.0, 0)
    roots.sort(key=_KEY)
    return roots


def _prune(roots: list[Node]) -> list[Node]:
    """§4 REFERENCES step 3: a dummy without children goes; a dummy with children gives
    them its place, but at the top only when it has one. Each node's children are pruned
    before the node itself, so a child that is a dummy has only messages under it."""
    for n in _parents_first_reversed(roots):
        kept: list[Node] = []
        for c in n.children:
            if c.row is not None:
                kept.append(c)
            else:  # a dummy below the top: its children (maybe none) take its place
                kept.extend(c.children)
        for c in kept:
            c.parent = n
        n.children = kept
    out: list[Node] = []
    for n in roots:
        if n.row is not None or len(n.children) > 1:
            out.append(n)
        elif n.children:  # a dummy at the top with one child: the child is a top
            (child,) = n.children
            child.parent = None
            out.append(child)
    return out


def _merge_subjects(roots: list[Node]) -> tuple[list[Node], list[Node]]:
    """§4 REFERENCES step 5: top-level threads with the same base subject are joined.
    Returns the new top level and the nodes that got children (each once).

    Only top-level nodes get children here, and only messages: a dummy takes the
    subject's table entry from any message (B), so a message is put under a message or
    a new dummy, and a dummy's children (messages, after (3)) move to another dummy."""
    table: dict[str, Node] = {}
    for n in roots:  # (5)(A), (B): one thread per subject, a dummy's or an original's
        row = n.subject_row()
        if row is None or not row.subject:
            continue
        old = table.get(row.subject)
        if (
            old is None
            or (n.row is None and old.row is not None)
            or (old.row is not None and old.row.reply and n.row is not None and not n.row.reply)
        ):
            table[row.subject] = n
    out: list[Node] = []
    where: dict[Node, int] = {}  # position in ``out`` (no list scans: O(n) per merge)
    changed: dict[Node, None] = {}
    for n in roots:  # (5)(C): the others join it
        row = n.subject_row()
        old = table.get(row.subject) if row is not None and row.subject else None
        if old is None or old is n:
            where[n] = len(out)
            out.append(n)
            continue
        if old.row is None and n.row is None:  # two dummies: the children join
            for c in list(n.children):
                _link(old, c)
            changed[old] = None
        elif old.row is None or (n.row is not None and n.row.reply and not old.row.reply):
            _link(old, n)  # under the dummy, or a reply under the original
            changed[old] = None
        else:
            dummy = Node()
            subject = old.subject_row()
            assert subject is not None
            table[subject.subject] = dummy
            at = where.pop(old, None)
            if at is not None:
                out[at] = dummy
            else:
                at = len(out)
                out.append(dummy)
            where[dummy] = at
            _link(dummy, old)
            _link(dummy, n)
            changed[dummy] = None
    return [n for n in out if n.parent is None], list(changed)


def _sort(roots: list[Node]) -> None:
    """§4 REFERENCES step 6 (and 4): every set of siblings by sent date, then mailbox
    order, the deepest first; each node's key computed once (a dummy's is its first
    child's, known once its children are sorted). A message's key was set with its row;
    a dummy without children keeps (0, 0)."""
    for n in _parents_first_reversed(roots):
        n.children.sort(key=_KEY)
        if n.row is None:
            n.k = n.children[0].k
    roots.sort(key=_KEY)


_KEY = attrgetter("k")


class SubjectThreads(NamedTuple):
    """ORDEREDSUBJECT threads as :func:`mailcore.mailstore.sqlsearch.subject_threads`
    returns them: ``(uid, first uid of its thread)`` pairs, thread by thread, each
    thread's first message (the parent of the others) first."""

    pairs: list[tuple[int, int]]


class Rendered(NamedTuple):
    """A thread-list already rendered in UID form (mailcore.mailstore.threadcache)."""

    text: bytes


_NUMBER = re.compile(rb"\d+")


def _renumbered(text: bytes, number: dict[int, int]) -> bytes:
    """A UID-form thread-list with every UID replaced by its sequence number: the same
    bytes :func:`render` gives with ``number`` (only numbers differ between the forms)."""
    return _NUMBER.sub(lambda m: b"%d" % number[int(m.group())], text)


def _render_flat(pairs: list[tuple[int, int]], number: dict[int, int] | None) -> bytes:
    """:func:`render` of :class:`SubjectThreads`: ``(a)``, ``(a b)``, ``(a (b)(c))``."""
    ids = [u for u, _ in pairs] if number is None else [number[u] for u, _ in pairs]
    starts = [i for i, (u, first) in enumerate(pairs) if u == first]
    starts.append(len(pairs))
    out: list[str] = []
    for i, end in pairwise(starts):
        n = end - i
        if n == 1:
            out.append(f"({ids[i]})")
        elif n == 2:
            out.append(f"({ids[i]} {ids[i + 1]})")
        else:
            out.append(f"({ids[i]} (" + ")(".join(map(str, ids[i + 1 : end])) + "))")
    return "".join(out).encode()


def render(
    roots: Sequence[Node] | SubjectThreads | Rendered, number: dict[int, int] | None = None
) -> bytes:
    """RFC 5256 §4 thread-list: ``(3 6 (4 23)(44 7 96))``; ``number`` maps UIDs to
    sequence numbers (THREAD rather than UID THREAD). A node with one child continues
    its parenthesised list; several children are each a list of their own."""
    if isinstance(roots, Rendered):
        return roots.text if number is None else _renumbered(roots.text, number)
    if isinstance(roots, SubjectThreads):
        return _render_flat(roots.pairs, number)
    out: list[str] = []
    after_number = False  # a space goes between a number and what follows, but ")"
    stack: list[Node | None] = []  # a node opens a list; None closes one
    for r in reversed(roots):
        stack += (None, r)
    while stack:
        n = stack.pop()
        if n is None:
            out.append(")")
            after_number = False
            continue
        out.append(" (" if after_number else "(")
        after_number = False
        while True:
            if n.row is not None:
                uid = n.row.uid
                out.append(" " if after_number else "")
                out.append(str(uid if number is None else number[uid]))
                after_number = True
            if len(n.children) != 1:
                break
            n = n.children[0]
        for c in reversed(n.children):
            stack += (None, c)
    return "".join(out).encode()


__all__ = [
    "COLUMNS",
    "SUBJECT_COLUMNS",
    "Node",
    "Rendered",
    "SubjectThreads",
    "ThreadRow",
    "normal_id",
    "ordered_subject",
    "references",
    "render",
    "row_of",
    "rows_of",
    "subject_rows_of",
]
