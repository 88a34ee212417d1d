"""structlog setup shared by every service.

JSON lines when stderr is not a terminal (containers, log shippers), coloured console
lines when it is. A per-connection context (connection id, peer address, user) is bound
with :func:`connection_context` and carried by every log line the connection's task emits.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
from collections.abc import Iterator
from typing import Any

import structlog

_conn_ids = itertools.count(1)


def setup_logging(service: str, level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib root logger (libraries log through it)."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    json_out = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_out
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    """A bound logger; ``name`` goes into every line as ``logger``."""
    return structlog.get_logger(name) if name else structlog.get_logger()


def next_connection_id(prefix: str) -> str:
    """A short id unique within this process, e.g. ``imap-42``."""
    return f"{prefix}-{next(_conn_ids)}"


@contextlib.contextmanager
def connection_context(**values: Any) -> Iterator[None]:
    """Bind values (conn, peer, user…) to every log line of the current task."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def bind(**values: Any) -> None:
    """Add values to the current connection's context (e.g. the user after login)."""
    structlog.contextvars.bind_contextvars(**values)
