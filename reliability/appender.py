"""IMAP APPEND load: clients that append test messages and record each answer in the
ledger (tagged OK is a promise like a 250; NO/BAD is a refusal; a broken connection is
unknown, and the client sends the same message again, as a mail client would)."""

from __future__ import annotations

import imaplib
import threading
import time

from reliability.ledger import Entry, Ledger, Outcome
from reliability.load import make_message, new_rid


class Appender:
    def __init__(
        self,
        host: str,
        port: int,
        ledger: Ledger,
        accounts: list[tuple[str, str]],
        pause: float = 0.0,  # seconds each client waits after an answered APPEND
    ) -> None:
        self.host, self.port, self.ledger, self.accounts = host, port, ledger, accounts
        self.pause = pause
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _client(self, user: str, password: str) -> None:
        imap: imaplib.IMAP4 | None = None
        pending: tuple[str, bytes] | None = None
        while not self._stop.is_set():
            if pending is None:
                rid = new_rid("append")
                pending = (rid, make_message(rid, "appender@rel.test", [user], 400))
            rid, msg = pending
            try:
                if imap is None:
                    imap = imaplib.IMAP4(self.host, self.port, timeout=30)
                    imap.login(user, password)
                typ, data = imap.append("INBOX", None, None, msg)
            except (OSError, imaplib.IMAP4.abort, EOFError) as exc:
                # The connection broke: maybe appended, maybe not. Reconnect, send again.
                self.ledger.record(
                    Entry(rid, (user,), Outcome.UNKNOWN, None, "APPEND", type(exc).__name__)
                )
                imap = None
                time.sleep(0.3)
                continue
            except imaplib.IMAP4.error as exc:
                self.ledger.record(Entry(rid, (user,), Outcome.REFUSED, None, "APPEND", str(exc)))
                imap, pending = None, None
                time.sleep(0.3)
                continue
            outcome = Outcome.ACKED if typ == "OK" else Outcome.REFUSED
            text = (data[0] or b"").decode(errors="replace")[:100] if data else ""
            self.ledger.record(Entry(rid, (user,), outcome, None, "APPEND", text))
            pending = None
            if self.pause:
                self._stop.wait(self.pause)
        if imap is not None:
            try:
                imap.logout()
            except (OSError, imaplib.IMAP4.error, EOFError):
                pass

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._client, args=acct, daemon=True) for acct in self.accounts
        ]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
