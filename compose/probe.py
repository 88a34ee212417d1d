#!/usr/bin/env python3
"""Health probes for compose's HEALTHCHECKs (standard library only, every image has python3).

  postern-probe http URL            200 from URL
  postern-probe smtp HOST PORT      a 220 greeting
  postern-probe clamd HOST PORT     PONG to clamd's PING
Exit status 0 when healthy, 1 otherwise (one line on stderr says why).
"""

import socket
import sys
import urllib.request

TIMEOUT = 5.0


def http(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:  # noqa: S310 (local probe)
        return bool(reply.status == 200)


def smtp(host: str, port: str) -> bool:
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        greeting = s.makefile("rb").readline()
        s.sendall(b"QUIT\r\n")
        return greeting.startswith(b"220")


def clamd(host: str, port: str) -> bool:
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        s.sendall(b"zPING\0")
        return s.recv(64).rstrip(b"\0\n") == b"PONG"


def main() -> int:
    kind, *args = sys.argv[1:]
    try:
        ok = {"http": http, "smtp": smtp, "clamd": clamd}[kind](*args)
    except Exception as exc:
        print(f"postern-probe {kind}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"postern-probe {kind}: unhealthy answer", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
