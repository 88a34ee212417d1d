"""W2's ceiling: the same messages fed to spamd directly, with the same concurrency.

``python -m bench.loadgen.spamd_feed --port P --file MSG --messages 200 --concurrency 20``
prints one JSON object: messages checked and the seconds it took. Each check is one
SPAMC/1.5 CHECK on its own connection, as spamc and the filter make them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from bench.loadgen.wire import ProtocolError, spamd_check


async def feed(host: str, port: int, body: bytes, messages: int, concurrency: int) -> float:
    remaining = iter(range(messages))

    async def worker() -> None:
        for _ in remaining:
            await spamd_check(host, port, body)

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen.spamd_feed", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", type=Path, required=True, help="the message (CRLF line endings)")
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=20)
    args = p.parse_args(argv)
    if not args.host.startswith("127."):
        print("spamd_feed: load tests talk to 127.0.0.0/8 only", file=sys.stderr)
        return 2
    body = args.file.read_bytes()
    try:
        seconds = asyncio.run(feed(args.host, args.port, body, args.messages, args.concurrency))
    except (ProtocolError, OSError) as exc:
        print(f"spamd_feed: {exc}", file=sys.stderr)
        return 1
    json.dump({"messages": args.messages, "seconds": seconds}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
