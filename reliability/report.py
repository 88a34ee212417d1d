"""The two tables ``make reliability`` prints and commits to docs/reliability.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reliability.checker import Report


@dataclass(frozen=True, slots=True)
class Probe:
    """One hostile input: what was sent, what a correct server answers, what came back."""

    area: str
    input: str
    expected: str
    got: str
    ok: bool


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(str(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def scenario_table(reports: Sequence[Report]) -> str:
    head = ["scenario", "acked", "lost", "duplicated", "phantom", "UID violations", "result"]
    head.append("SMTP answers (code×attempts; - = none)")
    rows = []
    for r in reports:
        dup = str(r.duplicated)
        if r.explained_duplicates:
            dup += f" ({r.explained_duplicates} explained)"
        rows.append(
            [
                r.scenario,
                str(r.acked),
                str(r.lost),
                dup,
                str(r.phantom),
                str(r.uid_violations),
                "ok" if r.ok else "FAIL",
                " ".join(f"{code}×{n}" for code, n in r.answers.items()),
            ]
        )
    return _table(head, rows)


def probe_table(probes: Sequence[Probe]) -> str:
    head = ["area", "input", "expected answer", "answer got", "result"]
    return _table(
        head, [[p.area, p.input, p.expected, p.got, "ok" if p.ok else "FAIL"] for p in probes]
    )


def findings(reports: Sequence[Report]) -> str:
    """Details of every scenario that failed or has something to explain."""
    out = []
    for r in reports:
        if r.ok and not r.duplicated and not r.unknown_delivered and not r.bad_answers:
            continue
        out.append(f"* **{r.scenario}** ({'ok' if r.ok else 'FAIL'}):")
        if r.unknown_delivered:
            out.append(
                f"  - {r.unknown_delivered} message(s) whose connection broke before the "
                "answer were delivered (allowed: the sender cannot know and retries)"
            )
        out += [f"  - {d}" for d in r.details[: 15 if r.ok else 30]]
    return "\n".join(out)
