"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §4), in memory, from the
thread columns of the index (mailcore.mailstore.sortkeys): base subject, reply marker,
sent date, Message-ID and parent chain. No message is parsed at query time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple


class ThreadRow(NamedTuple):
    uid: int
    subject: str  # base subject, ASCII upper-cased
    reply: bool
    sent: float
    msg_id: str | None
    refs: tuple[str, ...]


# the columns sqlsearch.rows reads for a ThreadRow
COLUMNS = "uid, k_subject, k_reply, sent_at, msg_id, refs"


def row_of(r: tuple[object, ...]) -> ThreadRow:
    uid, subject, reply, sent, msg_id, refs = r
    return ThreadRow(
        int(uid),  # type: ignore[call-overload]
        str(subject or ""),
        bool(reply),
        float(sent or 0.0),  # type: ignore[arg-type]
        None if msg_id is None else str(msg_id),
        tuple(str(refs or "").split()),
    )


# ORDEREDSUBJECT needs fewer
SUBJECT_COLUMNS = "uid, k_subject, sent_at"


def subject_rows_of(found: Sequence[tuple[Any, ...]]) -> list[ThreadRow]:
    """Rows of :data:`SUBJECT_COLUMNS` (no reply marker, id or references)."""
    return [ThreadRow(u, s or "", False, t or 0.0, None, ()) for u, s, t in found]


def rows_of(found: Sequence[tuple[Any, ...]]) -> list[ThreadRow]:
    """:func:`row_of` for a whole result, without the per-value conversions: the index
    columns already hold int / str / float / NULL (one call per message is most of a
    THREAD's time on a large mailbox)."""
    return [
        ThreadRow(u, s or "", bool(r), t or 0.0, m, tuple(f.split()) if f else ())
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
        if self.row is not None:
            return (self.row.sent, self.row.uid)
        return self.children[0].key() if self.children else (0.0, 0)

    def subject_row(self) -> ThreadRow | None:
        return (
            self.row if self.row is not None else (self.children[0].row if self.children else None)
        )


_SUBJECT_ORDER = itemgetter(1, 3, 0)  # ThreadRow (subject, sent, uid)


def ordered_subject(rows: Sequence[ThreadRow]) -> list[Node]:
    """§4 ORDEREDSUBJECT: messages grouped by base subject, each group ordered by sent
    date; its first message is the parent of all the others; threads by the sent date of
    their first message."""
    groups: dict[str, list[ThreadRow]] = {}
    for row in sorted(rows, key=_SUBJECT_ORDER):
        groups.setdefault(row.subject, []).append(row)
    roots = []
    for members in groups.values():
        root = Node(members[0])
        root.children = [Node(m, root) for m in members[1:]]
        roots.append(root)
    roots.sort(key=Node.key)
    return roots


def _is_ancestor(a: Node, b: Node) -> bool:
    """True when ``a`` is ``b`` or one of its ancestors."""
    n: Node | None = b
    while n is not None:
        if n is a:
            return True
        n = n.parent
    return False


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def references(rows: Sequence[ThreadRow]) -> list[Node]:
    """§4 REFERENCES (the algorithm of J. Zawinski, steps 1 to 6)."""
    table: dict[str, Node] = {}
    nodes: list[Node] = []
    for row in sorted(rows, key=lambda r: r.uid):
        # (1) a message without an id, or with one seen before, gets a unique container
        node = table.get(row.msg_id) if row.msg_id else None
        if node is None or node.row is not None:
            node = Node(row)
            if row.msg_id and row.msg_id not in table:
                table[row.msg_id] = node
        else:
            node.row = row  # the dummy made for this id by an earlier reference
        nodes.append(node)
        # (1)(A) link the references in order, keeping existing parents, no loops
        prev: Node | None = None
        for ref in row.refs:
            cur = table.get(ref)
            if cur is None:
                cur = table[ref] = Node()
            if prev is not None and cur.parent is None and not _is_ancestor(cur, prev):
                _link(prev, cur)
            prev = cur
        # (1)(B) the last reference is the message's parent (replacing any other)
        if prev is not None and prev is not node and not _is_ancestor(node, prev):
            _link(prev, node)
        elif prev is None and node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
    # (2) the root set
    seen: set[Node] = set()  # by identity (Node has eq=False)
    roots: list[Node] = []
    for n in [*table.values(), *nodes]:
        if n.parent is None and n not in seen:
            seen.add(n)
            roots.append(n)
    # (4) prune dummies
    roots = _prune(roots, top=True)
    _sort(roots)
    roots = _merge_subjects(roots)
    _sort(roots)  # (6)
    return roots


def _prune(nodes: list[Node], *, top: bool) -> list[Node]:
    out: list[Node] = []
    for n in nodes:
        n.children = _prune(n.children, top=False)
        for c in n.children:
            c.parent = n
        if n.row is not None:
            out.append(n)
        elif not n.children:
            continue  # (4)(A) a dummy without children goes
        elif not top or len(n.children) == 1:
            # (4)(B) its children take its place (at the top only when it has one)
            for c in n.children:
                c.parent = n.parent
            out.extend(n.children)
        else:
            out.append(n)
    return out


def _merge_subjects(roots: list[Node]) -> list[Node]:
    """§4 REFERENCES step 5: top-level threads with the same base subject are joined."""
    table: dict[str, Node] = {}
    for n in roots:  # (5)(A)-(C)
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
    for n in roots:  # (5)(D)
        row = n.subject_row()
        old = table.get(row.subject) if row is not None and row.subject else None
        if old is None or old is n:
            where[n] = len(out)
            out.append(n)
            continue
        if old.row is None and n.row is None:
            for c in list(n.children):
                _link(old, c)
        elif old.row is None or (n.row is not None and n.row.reply and not old.row.reply):
            _link(old, n)  # (5)(D)(b) under the dummy, (c) a reply under the original
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
    return [n for n in out if n.parent is None]


def _sort(nodes: list[Node]) -> None:
    """Children before parents; each node's key computed once (a dummy's is its first
    child's, known once the children are sorted)."""
    for n in nodes:
        _sort(n.children)
        if n.row is not None:
            n.k = (n.row.sent, n.row.uid)
        else:
            n.k = n.children[0].k if n.children else (0.0, 0)
    nodes.sort(key=_KEY)


_KEY = attrgetter("k")


def render(roots: Sequence[Node], number: dict[int, int] | None = None) -> bytes:
    """RFC 5256 §4 thread-list: ``(3 6 (4 23)(44 7 96))``; ``number`` maps UIDs to
    sequence numbers (THREAD rather than UID THREAD)."""

    def one(n: Node) -> str:
        parts: list[str] = []
        while True:
            if n.row is not None:
                uid = n.row.uid
                parts.append(str(uid if number is None else number[uid]))
            if len(n.children) == 1:
                n = n.children[0]
                continue
            if n.children:
                parts.append("".join(f"({one(c)})" for c in n.children))
            return " ".join(parts)

    return "".join(f"({one(r)})" for r in roots).encode()


__all__ = [
    "COLUMNS",
    "SUBJECT_COLUMNS",
    "Node",
    "ThreadRow",
    "ordered_subject",
    "references",
    "render",
    "row_of",
    "rows_of",
    "subject_rows_of",
]
