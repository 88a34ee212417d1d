"""SpamAssassin's spamd through aiospamc: the score and the rules that fired (SYMBOLS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiospamc


class SpamdError(Exception):
    """spamd is unreachable or answered with an error."""


@dataclass(frozen=True, slots=True)
class SpamReport:
    score: float
    rules: tuple[str, ...]


class SpamdClient:
    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 783, socket_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.socket_path = socket_path

    async def check(self, message: bytes, timeout: float) -> SpamReport:
        try:
            response = await aiospamc.symbols(
                message,
                host=self.host,
                port=self.port,
                socket_path=self.socket_path,
                timeout=aiospamc.Timeout(total=timeout, connection=min(timeout, 5.0)),
            )
        except TimeoutError:
            raise
        except Exception as exc:  # aiospamc raises a family of its own; all mean "no verdict"
            raise SpamdError(f"{type(exc).__name__}: {exc}"[:200]) from None
        spam = response.headers.spam
        if spam is None:
            raise SpamdError("spamd answered without a Spam header")
        body = bytes(response.body or b"").decode("ascii", "replace").strip()
        rules = tuple(r for r in body.replace("\n", ",").split(",") if r)
        return SpamReport(score=float(spam.score), rules=rules)
