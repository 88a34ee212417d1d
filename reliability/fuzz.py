"""Fuzzing under Hypothesis, for a bounded time: the SMTP, IMAP and POP3 command parsers
and the MIME parser get random and token-built input; a parser may refuse it only with
its own syntax error. Any other exception is a crash: its (shrunk) input is saved under
``tests/reliability/fuzz_regressions/`` and replayed by the test suite from then on."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailcore.message.parse import parse as parse_mime
from services.filter.smtp.parser import CommandSyntaxError
from services.filter.smtp.parser import parse_command as parse_smtp
from services.store.imap.lexer import ParseError as ImapParseError
from services.store.imap.parser import parse as parse_imap
from services.store.pop3.parser import ParseError as Pop3ParseError
from services.store.pop3.parser import parse_command as parse_pop3

REGRESSIONS = Path(__file__).resolve().parent.parent / "tests" / "reliability" / "fuzz_regressions"


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    refusals: tuple[type[BaseException], ...]  # the parser's own "no" to bad input
    data: st.SearchStrategy[bytes]


def _tokens(words: list[bytes]) -> st.SearchStrategy[bytes]:
    atoms = st.one_of(
        st.sampled_from(words),
        st.binary(max_size=12),
        st.sampled_from([b"(", b")", b"[", b"]", b"{5}\r\n", b"{0+}", b'"', b"\\", b"*", b"%"]),
        st.integers(0, 2**64).map(lambda n: str(n).encode()),
    )
    return st.lists(atoms, max_size=30).map(b" ".join)


SMTP_WORDS = [
    b"MAIL",
    b"RCPT",
    b"FROM:<a@b>",
    b"TO:<x@y>",
    b"SIZE=10",
    b"BODY=8BITMIME",
    b"SMTPUTF8",
    b"EHLO",
    b"HELO",
    b"AUTH",
    b"PLAIN",
    b"DATA",
    b"BDAT",
    b"<>",
    b"<@a,@b:c@d>",
    b'<"q uo"@x>',
    b"<a@[1.2.3.4]>",
    b"NOTIFY=NEVER",
]
IMAP_WORDS = [
    b"a1",
    b"UID",
    b"FETCH",
    b"SEARCH",
    b"STORE",
    b"SELECT",
    b"LOGIN",
    b"LIST",
    b"APPEND",
    b"1:*",
    b"BODY[1.2.HEADER.FIELDS (FROM)]<0.9>",
    b"FLAGS",
    b"+FLAGS",
    b"(\\Seen)",
    b"INBOX",
    b"CHARSET",
    b"UTF-8",
    b"OR",
    b"NOT",
    b"RETURN",
    b"(SAVE)",
    b"ENVELOPE",
    b"STATUS",
    b"(MESSAGES UIDNEXT)",
    b"ID",
    b"NIL",
    b"$",
]
POP3_WORDS = [
    b"USER",
    b"PASS",
    b"APOP",
    b"RETR",
    b"TOP",
    b"LIST",
    b"UIDL",
    b"DELE",
    b"STAT",
    b"AUTH",
    b"PLAIN",
    b"CAPA",
    b"STLS",
    b"1",
    b"0",
    b"-1",
    b"99999999999999",
]


def _mime() -> st.SearchStrategy[bytes]:
    line = st.one_of(
        st.sampled_from(
            [
                b"Content-Type: multipart/mixed; boundary=b",
                b"--b",
                b"--b--",
                b"",
                b" folded",
                b"Content-Transfer-Encoding: base64",
                b"Content-Type: message/rfc822",
                b"Subject: =?utf-8?B?w6k=?=",
                b"From: a@b",
                b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC",
                b"Content-Type: text/plain; charset=\x00",
            ]
        ),
        st.binary(max_size=40),
    )
    return st.lists(line, max_size=60).map(b"\r\n".join)


def _line(words: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), _tokens(words))


TARGETS = [
    Target("smtp", parse_smtp, (CommandSyntaxError,), _line(SMTP_WORDS)),
    Target("imap", parse_imap, (ImapParseError,), _line(IMAP_WORDS)),
    Target("pop3", parse_pop3, (Pop3ParseError,), _line(POP3_WORDS)),
    Target("mime", parse_mime, (), st.one_of(st.binary(max_size=2000), _mime())),
]


def replay(target: Target, data: bytes) -> BaseException | None:
    """Run one input; the unexpected exception it raises, or None."""
    try:
        target.run(data)
    except target.refusals:
        return None
    except Exception as exc:
        return exc
    return None


@dataclass
class Crash:
    target: str
    data: bytes
    error: str
    saved: Path | None = None


def fuzz(
    target: Target, seconds: float, save_to: Path | None = REGRESSIONS, batch: int = 2000
) -> tuple[int, Crash | None]:
    """Fuzz ``target`` for about ``seconds``: (inputs tried, first crash or None)."""
    tried = 0
    last_bad: list[bytes] = []
    deadline = time.monotonic() + seconds

    @settings(
        max_examples=batch,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(target.data)
    def one(data: bytes) -> None:
        nonlocal tried
        tried += 1
        exc = replay(target, data)
        if exc is not None:
            last_bad.append(data)
            raise exc

    while time.monotonic() < deadline:
        try:
            one()
        except Exception as exc:
            data = last_bad[-1] if last_bad else b""
            crash = Crash(target.name, data, f"{type(exc).__name__}: {exc}"[:200])
            if save_to is not None:
                save_to.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256(data).hexdigest()[:16]
                crash.saved = save_to / f"{target.name}-{digest}.bin"
                crash.saved.write_bytes(data)
            return tried, crash
    return tried, None


def run_fuzzers(seconds: float) -> list[str]:
    """Fuzz every target for an equal share of ``seconds``; lines for the report."""
    print("-- fuzzing", flush=True)
    share = seconds / len(TARGETS)
    lines = ["| parser | inputs tried | crash |", "|---|---|---|"]
    for t in TARGETS:
        tried, crash = fuzz(t, share)
        found = "none" if crash is None else f"{crash.error} (saved {crash.saved})"
        print(f"   {t.name}: {tried} inputs, crash: {found}", flush=True)
        lines.append(f"| {t.name} | {tried} | {found.replace('|', '/')} |")
    return lines
