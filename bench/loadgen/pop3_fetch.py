"""W5's POP3 client: retrieve every message of one maildrop, as a mail client does.

``python -m bench.loadgen.pop3_fetch --port P --user U --password W`` prints one JSON
object: messages and bytes retrieved and the seconds it took. The session is lock-step
(one command, one answer): USER, PASS, STAT, UIDL, RETR 1..n, QUIT. Nothing is deleted,
so the maildrop can be fetched again by the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable

from bench.loadgen.wire import Pop3, ProtocolError


async def fetch_all(host: str, port: int, user: str, password: str) -> dict[str, object]:
    t0 = time.monotonic()
    conn = await Pop3.connect(host, port)
    await conn.login(user, password)
    stat = await conn.command(b"STAT")
    count = int(stat.split()[1])
    uidl = await conn.multiline(b"UIDL")
    listed = uidl.count(b"\r\n")
    if listed != count:
        raise ProtocolError(f"UIDL listed {listed} messages, STAT said {count}")
    total = 0
    for n in range(1, count + 1):
        total += len(await conn.multiline(b"RETR %d" % n))
    await conn.quit()
    seconds = time.monotonic() - t0
    return {"messages": count, "bytes": total, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen.pop3_fetch", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    args = p.parse_args(argv)
    if not args.host.startswith("127."):
        print("pop3_fetch: load tests talk to 127.0.0.0/8 only", file=sys.stderr)
        return 2
    runner: Callable[..., object] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    try:
        result = runner(
            asyncio.wait_for(fetch_all(args.host, args.port, args.user, args.password), 900)
        )
    except (ProtocolError, OSError, TimeoutError) as exc:
        print(f"pop3_fetch: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
