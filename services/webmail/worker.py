"""One worker process of a webmail node (``webmail_workers`` > 1):
``python -m services.webmail.worker --parent PID``, started by the service process
(services/webmail/workers.py), never by hand.

It serves the webmail on the port the service process bound (``POSTERN_HTTP_PORT`` as
the service process passes it; ``SO_REUSEPORT``) with its own NATS connection and IMAP
pool. It stops on SIGTERM, and by itself when the service process is gone (at once on
Linux, ``PR_SET_PDEATHSIG``; else within a second).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
from functools import partial

from mailcore.config import WebmailSettings
from mailcore.service import run_service
from services.webmail.app import serve

_PR_SET_PDEATHSIG = 1


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--parent", type=int, required=True)
    ns = args.parse_args()
    with contextlib.suppress(OSError, AttributeError):  # Linux: SIGTERM when the parent dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != ns.parent:  # gone before the line above
        sys.exit(0)
    run_service(WebmailSettings, partial(serve, parent=ns.parent))


if __name__ == "__main__":
    main()
