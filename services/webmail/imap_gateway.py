"""The one module that speaks IMAP: aioimaplib underneath, typed records on top.

Every view reaches the store through :class:`ImapClient`. Extensions are used when the
store advertises them (SORT, PREVIEW, MOVE, SPECIAL-USE) and emulated otherwise, so the
webmail works against any IMAP4rev1 server. Each command counts one round trip in
:data:`ROUND_TRIPS`, which the app reports per page (mailcore.metrics).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aioimaplib

from services.webmail import mutf7
from services.webmail.imap_parse import Value, join_responses, number, pairs, parse, text
from services.webmail.imap_records import (
    LIST_HEADERS,
    SORT_KEYS,
    SPECIAL_USES,
    Folder,
    Page,
    Row,
    base_subject,
    decode_words,
    fetch_attrs,
    flatten,
    folder_order,
    imap_quote,
    is_change,
    last_text,
    numbers,
    row_of,
    search_criteria,
    sort_key,
    strip_name,
    uid_set,
    values_of,
)

__all__ = [
    "ROUND_TRIPS",
    "SORT_KEYS",
    "SPECIAL_USES",
    "Folder",
    "ImapClient",
    "ImapError",
    "Page",
    "Row",
    "Upstream",
    "decode_words",
    "imap_quote",
]

_WIRE_LOG = logging.getLogger(aioimaplib.__name__ + ".aioimaplib")

# LIST-STATUS (RFC 5819) answers LIST with STATUS lines in between: aioimaplib hands an
# untagged reply to the running command of the same name, or to whichever command runs
# alone (a "sync" command). LIST runs alone here, so its STATUS lines reach it.
aioimaplib.Commands["LIST"] = aioimaplib.Cmd(
    "LIST", (aioimaplib.AUTH, aioimaplib.SELECTED), aioimaplib.Exec.is_sync
)


class _FetchCommand(aioimaplib.FetchCommand):  # type: ignore[misc]
    """aioimaplib's FETCH with the same "is this FETCH response complete?" test, kept as a
    running parenthesis balance instead of re-joining every line received so far on each
    line (quadratic in the rows of a list page: a third of the webmail's IMAP CPU).

    The test stays aioimaplib's: the lines (not literal data) since the last line that
    opens a ``n FETCH (`` response hold as many ``(`` as ``)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._balance = 0

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if isinstance(line, bytes):  # literal data arrives as bytearray: not counted
            delta = line.count(b"(") - line.count(b")")
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._balance = delta
            else:
                self._balance += delta

    def wait_data(self) -> bool:
        return bool(self._balance != 0)


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's client protocol with its receiving side in one pass over the bytes.

    aioimaplib's ``_handle_responses`` recurses once per line and copies the unread rest of
    the buffer at each (quadratic in a response's lines: a list page's FETCH is about 250),
    and ``data_received`` formats every buffer for a debug line whether or not anyone
    logs it. This walks the buffer by offsets and hands each line, and each literal, to
    aioimaplib's own handlers in the same order, with the same "is the command still
    waiting for data?" decisions, so the commands see what they saw before."""

    incomplete_line: bytes
    current_command: Any

    def data_received(self, d: bytes) -> None:
        if _WIRE_LOG.isEnabledFor(logging.DEBUG):
            _WIRE_LOG.debug("Received : %s", d)
        data = self.incomplete_line + d if self.incomplete_line else d
        self.incomplete_line = b""
        cmd: Any = self.current_command
        self.current_command = None
        pos, end = 0, len(data)
        while True:
            if pos >= end:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if cmd is not None and cmd.wait_data():
                    self.current_command = cmd
                return
            if cmd is not None and cmd.wait_literal_data():
                # RFC 3501 §4.3: a literal's octets, which may hold CRLF
                need = cmd._expected_size - len(cmd._resp_literal_data)
                cmd.append_literal_data(data[pos : pos + need])
                pos = min(end, pos + need)
                if cmd.wait_literal_data():
                    self.current_command = cmd
                    return
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                self.current_command = cmd
                self.incomplete_line = data[pos:]
                return
            line = data[pos:eol]
            pos = eol + 2
            found = self._handle_line(line, cmd)
            literal = aioimaplib.literal_data_re.match(line)
            if literal:
                if found is None:
                    found = aioimaplib.Command("NIL", "unused")
                found.begin_literal_data(int(literal.group("size")))
                cmd = found
            elif found is not None and found.wait_data():
                cmd = found
            else:
                cmd = None


class _Imap4(aioimaplib.IMAP4):  # type: ignore[misc]
    """aioimaplib's client on :class:`_Protocol` (implicit TLS when given a context)."""

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


# Round trips to the store made while serving the current request.
ROUND_TRIPS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "imap_round_trips", default=None
)


class ImapError(Exception):
    """The store said NO or BAD, or the connection failed; ``text`` is the server's words."""

    def __init__(self, text: str, *, auth: bool = False, connection: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.auth = auth
        self.connection = connection


@dataclass(slots=True)
class Upstream:
    """Where the store is and how to reach it."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None  # implicit TLS (IMAPS) when set
    timeout: float = 30.0


@dataclass
class ImapClient:
    imap: Any
    user: str
    capabilities: frozenset[str] = frozenset()
    selected: str | None = None
    last_used: float = 0.0
    broken: bool = False
    # Back from the pool and not used since: the store's view of the selected folder may
    # lack mail that arrived meanwhile (see message_and_flags).
    stale: bool = False
    _delimiter: str = "/"
    _folders: list[Folder] = field(default_factory=list)

    # --- connection ---------------------------------------------------------------------
    @classmethod
    async def connect(
        cls, up: Upstream, user: str, password: str, *, client_ip: str | None
    ) -> ImapClient:
        imap: Any = _Imap4(host=up.host, port=up.port, timeout=up.timeout, ssl_context=up.tls)
        try:
            await imap.wait_hello_from_server()
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"store unreachable: {exc}", connection=True) from exc
        client = cls(imap, user)
        client._count()
        if client_ip:
            # RFC 2971 §3.3: the store believes this only from trusted webmail nodes
            await client._run(
                "ID",
                f'("name" "Postern webmail" "x-originating-ip" {imap_quote(client_ip)})',
                check=False,
            )
        try:
            resp = await asyncio.wait_for(imap.login(user, password), up.timeout)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            await client.close()
            raise ImapError(f"store unreachable: {exc}", connection=True) from exc
        client._count()
        if resp.result != "OK":
            await client.close()
            raise ImapError(last_text(resp.lines), auth=True)
        await client._run("CAPABILITY")
        client.capabilities = frozenset(c.upper() for c in imap.protocol.capabilities)
        return client

    async def close(self) -> None:
        self.broken = True
        try:
            if self.imap.get_state() not in ("LOGOUT", "CONNECTED", "STARTED"):
                await asyncio.wait_for(self.imap.logout(), 5)
        except Exception:  # noqa: S110 - closing anyway
            pass
        transport = getattr(self.imap.protocol, "transport", None)
        if transport is not None:
            transport.close()

    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    def _count(self) -> None:
        counter = ROUND_TRIPS.get()
        if counter is not None:
            counter[0] += 1

    async def _run(
        self, name: str, *args: str, uid: bool = False, check: bool = True, resp: str | None = None
    ) -> list[bytes]:
        """Run one command; its untagged responses as wire-format ``bytes``."""
        proto = self.imap.protocol
        prefix = "UID" if uid else None
        cmd: Any
        if name == "FETCH":
            cmd = _FetchCommand(proto.new_tag(), *args, prefix=prefix, loop=proto.loop)
        else:
            cmd = aioimaplib.Command(
                name,
                proto.new_tag(),
                *args,
                prefix=prefix,
                untagged_resp_name=resp,
                loop=proto.loop,
            )
        self._count()
        try:
            result = await asyncio.wait_for(proto.execute(cmd), self.imap.timeout)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            self.broken = True
            raise ImapError(f"{name} failed: {exc}", connection=True) from exc
        if proto.state in ("LOGOUT", "CONNECTED"):
            self.broken = True
        if name != "FETCH":
            self.stale = False  # the store sent its pending updates after this command
        if check and result.result != "OK":
            raise ImapError(last_text(result.lines))
        return join_responses(result.lines[:-1])

    # --- folders --------------------------------------------------------------------------
    async def folders(self) -> list[Folder]:
        """Every folder with its message and unseen counts: one LIST ... RETURN (STATUS)
        when the store has LIST-STATUS (RFC 5819), else LIST and a STATUS per folder."""
        args = ['""', '"*"']
        returns = []
        if self.has("SPECIAL-USE"):
            returns.append("SPECIAL-USE")  # RFC 6154 §2
        with_status = self.has("LIST-STATUS")
        if with_status:
            returns.append("STATUS (MESSAGES UNSEEN)")
        if returns:
            args += ["RETURN", "(" + " ".join(returns) + ")"]
        found: list[Folder] = []
        counts: dict[str, dict[bytes, Value]] = {}
        for line in await self._run("LIST", *args):
            if line[:7].upper() == b"STATUS ":
                vals = values_of(line, b"STATUS")
                if len(vals) >= 2 and isinstance(vals[1], list):
                    counts[mutf7.decode(text(vals[0]))] = pairs(vals[1])
                continue
            vals = values_of(line, b"LIST")
            if len(vals) < 3 or not isinstance(vals[0], list):
                continue
            flags = frozenset(text(f) for f in vals[0])
            delim = text(vals[1]) or "/"
            self._delimiter = delim
            found.append(Folder(mutf7.decode(text(vals[2])), flags, delim))
        out: list[Folder] = []
        for f in found:
            if f.selectable and f.name not in counts and not with_status:
                st = await self._run(
                    "STATUS", imap_quote(mutf7.encode(f.name)), "(MESSAGES UNSEEN)"
                )
                for line in st:
                    vals = values_of(line, b"STATUS")
                    if len(vals) >= 2 and isinstance(vals[1], list):
                        counts[f.name] = pairs(vals[1])
            c = counts.get(f.name, {})
            out.append(
                Folder(
                    f.name,
                    f.flags,
                    f.delimiter,
                    number(c.get(b"MESSAGES")),
                    number(c.get(b"UNSEEN")),
                )
            )
        out.sort(key=folder_order)
        self._folders = out
        return out

    async def special_folder(self, use: str, fallback: str) -> str:
        """The folder marked ``use`` (RFC 6154), else ``fallback`` (created if missing)."""
        folders = self._folders or await self.folders()
        for f in folders:
            if use in f.flags:
                return f.name
        if not any(f.name == fallback for f in folders):
            await self.create(fallback, special=use)
            self._folders = []
        return fallback

    async def create(self, name: str, *, special: str | None = None) -> None:
        args = [imap_quote(mutf7.encode(name))]
        if special and self.has("CREATE-SPECIAL-USE"):
            args += ["(USE", f"({special}))"]  # RFC 6154 §3
        await self._run("CREATE", *args)
        self._folders = []

    async def rename(self, old: str, new: str) -> None:
        await self._run("RENAME", imap_quote(mutf7.encode(old)), imap_quote(mutf7.encode(new)))
        self._folders = []
        if self.selected == old:
            self.selected = None

    async def delete(self, name: str) -> None:
        if self.selected == name:
            await self._run("CLOSE")
            self.imap.protocol.state = aioimaplib.AUTH
            self.selected = None
        await self._run("DELETE", imap_quote(mutf7.encode(name)))
        self._folders = []

    async def select(self, name: str) -> int:
        """SELECT ``name`` unless it is selected already; the message count when selecting."""
        if self.selected == name:
            return -1
        self.selected = None
        lines = await self._run("SELECT", imap_quote(mutf7.encode(name)))
        self.imap.protocol.state = aioimaplib.SELECTED  # aioimaplib's own state machine
        self.selected = name
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[1].upper() == b"EXISTS" and parts[0].isdigit():
                return int(parts[0])
        return 0

    # --- message lists --------------------------------------------------------------------
    async def uids(
        self, folder: str, *, sort: str, reverse: bool, query: str = ""
    ) -> tuple[list[int], bool]:
        """UIDs of ``folder`` matching ``query`` in display order; True if the store sorted."""
        await self.select(folder)
        criteria = search_criteria(query)
        if sort == "arrival":
            found = sorted(numbers(await self._run("SEARCH", *criteria, uid=True), b"SEARCH"))
            return (found[::-1] if reverse else found), False
        if self.has("SORT"):
            # RFC 5256 §3: UID SORT (program) charset criteria
            keys = f"(REVERSE {SORT_KEYS[sort]})" if reverse else f"({SORT_KEYS[sort]})"
            lines = await self._run("SORT", keys, "UTF-8", *criteria, uid=True)
            return numbers(lines, b"SORT"), True
        lines = await self._run("SEARCH", *criteria, uid=True)
        uids = numbers(lines, b"SEARCH")
        if not uids:
            return [], False
        rows = await self.rows(folder, uids, with_preview=False)
        rows.sort(key=sort_key(sort), reverse=reverse)
        return [r.uid for r in rows], False

    async def page(
        self,
        folder: str,
        *,
        sort: str = "arrival",
        reverse: bool = True,
        page: int = 1,
        per_page: int = 50,
        query: str = "",
    ) -> Page:
        uids, by_server = await self.uids(folder, sort=sort, reverse=reverse, query=query)
        pages = max(1, -(-len(uids) // per_page))
        page = min(max(1, page), pages)
        chosen = uids[(page - 1) * per_page : page * per_page]
        rows = await self.rows(folder, chosen) if chosen else []
        order = {u: i for i, u in enumerate(chosen)}
        rows.sort(key=lambda r: order.get(r.uid, 0))
        return Page(rows, len(uids), page, pages, by_server, max(uids, default=0), len(uids))

    async def threads(self, folder: str, *, query: str = "") -> tuple[list[list[int]], bool]:
        """Conversations in ``folder``: lists of UIDs, oldest first, the conversation with
        the newest message first; True if the store threaded them (RFC 5256 THREAD),
        otherwise they are grouped here by base subject (ORDEREDSUBJECT, RFC 5256 §4)."""
        await self.select(folder)
        criteria = search_criteria(query)
        if self.has("THREAD=REFERENCES"):
            lines = await self._run("THREAD", "REFERENCES", "UTF-8", *criteria, uid=True)
            found: list[list[int]] = []
            for line in lines:
                try:
                    vals = parse(strip_name(line, b"THREAD"))
                except ValueError:
                    continue
                found += [sorted(flatten(v)) for v in vals if isinstance(v, list)]
            found = [t for t in found if t]
            by_server = True
        else:
            uids = numbers(await self._run("SEARCH", *criteria, uid=True), b"SEARCH")
            groups: dict[str, list[int]] = {}
            for r in await self.rows(folder, uids, with_preview=False) if uids else []:
                groups.setdefault(base_subject(r.subject), []).append(r.uid)
            found = [sorted(g) for g in groups.values()]
            by_server = False
        found.sort(key=lambda t: t[-1], reverse=True)
        return found, by_server

    async def rows(
        self, folder: str, uids: Sequence[int], *, with_preview: bool = True
    ) -> list[Row]:
        await self.select(folder)
        items = f"(UID FLAGS RFC822.SIZE INTERNALDATE {LIST_HEADERS}"
        if with_preview and self.has("PREVIEW"):
            items += " PREVIEW"  # RFC 8970
        items += ")"
        lines = await self._run("FETCH", uid_set(uids), items, uid=True)
        return [r for r in (row_of(line) for line in lines) if r is not None]

    # --- one message ----------------------------------------------------------------------
    async def message(self, folder: str, uid: int) -> bytes | None:
        """The whole message (BODY.PEEK[]: reading does not set \\Seen by itself)."""
        found = await self.message_and_flags(folder, uid)
        return found[0] if found is not None else None

    async def message_and_flags(self, folder: str, uid: int) -> tuple[bytes, frozenset[str]] | None:
        await self.select(folder)
        found = await self._fetch_whole(uid)
        if found is None and self.stale:
            # UID FETCH resolves UIDs in the session's view of the folder, which is as of
            # this connection's last command (RFC 3501 §7: updates follow a command): a
            # message that arrived while the connection sat in the pool is not in it yet.
            # One NOOP brings the view up to date.
            await self._run("NOOP", resp="NOOP")
            found = await self._fetch_whole(uid)
        self.stale = False
        return found

    async def _fetch_whole(self, uid: int) -> tuple[bytes, frozenset[str]] | None:
        for line in await self._run("FETCH", str(uid), "(UID FLAGS BODY.PEEK[])", uid=True):
            attrs = fetch_attrs(line)
            if attrs is not None and number(attrs.get(b"UID")) == uid:
                body = attrs.get(b"BODY[]")
                flags = attrs.get(b"FLAGS")
                if isinstance(body, bytes):
                    names = (
                        frozenset(text(f) for f in flags)
                        if isinstance(flags, list)
                        else frozenset()
                    )
                    return body, names
        return None

    async def set_flag(self, folder: str, uids: Sequence[int], flag: str, on: bool) -> None:
        await self.select(folder)
        op = "+FLAGS.SILENT" if on else "-FLAGS.SILENT"  # RFC 3501 §6.4.6
        await self._run("STORE", uid_set(uids), op, f"({flag})", uid=True)

    async def move(self, folder: str, uids: Sequence[int], dest: str) -> None:
        await self.select(folder)
        target = imap_quote(mutf7.encode(dest))
        if self.has("MOVE"):
            await self._run("MOVE", uid_set(uids), target, uid=True)  # RFC 6851 §3.2
            return
        await self._run("COPY", uid_set(uids), target, uid=True)
        await self.set_flag(folder, uids, "\\Deleted", True)
        if self.has("UIDPLUS"):
            await self._run("EXPUNGE", uid_set(uids), uid=True)  # RFC 4315 §2.1
        else:
            await self._run("EXPUNGE")

    async def expunge(self, folder: str, uids: Sequence[int]) -> None:
        await self.set_flag(folder, uids, "\\Deleted", True)
        if self.has("UIDPLUS"):
            await self._run("EXPUNGE", uid_set(uids), uid=True)
        else:
            await self._run("EXPUNGE")

    async def append(self, folder: str, data: bytes, flags: str) -> None:
        self._count()
        try:
            resp = await asyncio.wait_for(
                self.imap.append(data, mailbox=imap_quote(mutf7.encode(folder)), flags=flags),
                self.imap.timeout,
            )
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            self.broken = True
            raise ImapError(f"APPEND failed: {exc}", connection=True) from exc
        if resp.result != "OK":
            raise ImapError(last_text(resp.lines))

    async def noop(self) -> None:
        await self._run("NOOP")

    # --- push -----------------------------------------------------------------------------
    async def changed_since(self, folder: str, last_uid: int, messages: int) -> bool:
        """True if ``folder`` no longer holds ``messages`` messages or holds one with a UID
        above ``last_uid``: what a page rendered from that state has not shown."""
        exists = await self.select(folder)
        if exists >= 0 and exists != messages:
            return True
        # RFC 3501 §6.4.8 / §9 seq-range: "n:*" also matches the highest UID when it is below
        # n, so the answer is filtered rather than trusted to be empty.
        lines = await self._run("SEARCH", "UID", f"{last_uid + 1}:*", uid=True)
        return any(u > last_uid for u in numbers(lines, b"SEARCH"))

    async def wait_for_change(self, folder: str, timeout: float) -> bool:
        """IDLE on ``folder`` (RFC 2177) until the store reports a change or ``timeout``;
        True on a change. Without IDLE, a NOOP after ``timeout`` answers the same."""
        await self.select(folder)
        if not self.has("IDLE"):
            await asyncio.sleep(timeout)
            lines = await self._run("NOOP", resp="NOOP")
            return any(is_change(line) for line in lines)
        self._count()
        try:
            idle = await self.imap.idle_start(timeout=timeout)
            changed = False
            try:
                while not changed:
                    pushed = await self.imap.wait_server_push(timeout=timeout + 5)
                    if pushed == aioimaplib.STOP_WAIT_SERVER_PUSH:
                        break
                    changed = any(is_change(bytes(x)) for x in pushed)
            finally:
                self.imap.idle_done()
                done = await asyncio.wait_for(idle, 10)
            # A change the store sent while IDLE ended comes with the tagged reply to DONE.
            changed = changed or any(is_change(bytes(x)) for x in done.lines)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            self.broken = True
            raise ImapError(f"IDLE failed: {exc}", connection=True) from exc
        return changed
