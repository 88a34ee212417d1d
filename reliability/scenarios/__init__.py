"""The scenario registry: each scenario is a name, a family (what part of Postern it
hurts), and an async function that returns a checker :class:`Report`.

Families: ``intake``, ``store``, ``bus``, ``scanners``, ``relay``, ``webmail`` and
``mirror``; each is a module under ``reliability/scenarios/`` whose functions carry the
:func:`scenario` decorator, listed in :data:`MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reliability.checker import Report
    from reliability.scenarios.common import Context

Run = Callable[["Context"], Awaitable["Report"]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    family: str
    what: str
    run: Run


REGISTRY: dict[str, Scenario] = {}
MODULES = ("intake", "store", "bus", "scanners", "relay", "webmail", "mirror")


def scenario(name: str, family: str, what: str) -> Callable[[Run], Run]:
    def register(fn: Run) -> Run:
        if name in REGISTRY:
            raise ValueError(f"scenario {name!r} registered twice")
        REGISTRY[name] = Scenario(name, family, what, fn)
        return fn

    return register


def load_all() -> dict[str, Scenario]:
    for module in MODULES:
        importlib.import_module(f"reliability.scenarios.{module}")
    return REGISTRY


def select(only: list[str] | None, skip: list[str] | None = None) -> list[Scenario]:
    """Scenarios whose name or family matches ``only`` (prefixes), minus ``skip``."""
    chosen = list(load_all().values())

    def hit(s: Scenario, keys: list[str]) -> bool:
        return any(s.name.startswith(k) or s.family == k for k in keys)

    if only:
        chosen = [s for s in chosen if hit(s, only)]
    if skip:
        chosen = [s for s in chosen if not hit(s, skip)]
    return chosen
