"""What a benchmark run produces: per-run figures of each side, summarised as medians.

A workload defines its metrics (:class:`MetricDef`); each run of each side yields a
:class:`SideRun` of values keyed by metric; :class:`WorkloadResult` keeps every run and
gives the median per metric. Everything round-trips through JSON, so a report can be
rebuilt from the files of a run and ``--only W4`` can update one workload of the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.stats import median, ratio

Side = Literal["postern", "peer"]
SIDES: tuple[Side, Side] = ("postern", "peer")


@dataclass(frozen=True, slots=True)
class MetricDef:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    target: float | None = None  # the ratio Postern must reach (>1 = Postern better)
    main: bool = True  # in the main table (else only in the workload's detail table)


@dataclass(slots=True)
class SideRun:
    side: Side
    run: int
    values: dict[str, float] = field(default_factory=dict)
    cpu_s: float | None = None
    peak_rss: int | None = None
    peak_pss: int | None = None
    wall_s: float = 0.0
    loadgen_cpu_s: float | None = None
    machine_busy_cores: float | None = None
    foreign_busy_cores: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Row:
    """One line of a table: a metric's median on each side and their ratio."""

    workload: str
    metric: MetricDef
    postern: float | None
    peer: float | None
    postern_runs: list[float]
    peer_runs: list[float]

    @property
    def ratio(self) -> float | None:
        return ratio(self.postern, self.peer, higher_is_better=self.metric.higher_is_better)

    @property
    def met(self) -> bool | None:
        r = self.ratio
        if r is None or self.metric.target is None:
            return None
        return r >= self.metric.target


@dataclass(slots=True)
class WorkloadResult:
    id: str
    title: str
    peer_name: str
    metrics: list[MetricDef]
    params: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # side -> why
    runs: list[SideRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    quick: bool = False
    profiles: dict[str, list[str]] = field(default_factory=dict)  # label -> summary lines

    def side_runs(self, side: Side) -> list[SideRun]:
        return [r for r in self.runs if r.side == side and r.error is None]

    def errors(self) -> list[SideRun]:
        return [r for r in self.runs if r.error is not None]

    def values(self, side: Side, key: str) -> list[float]:
        return [r.values[key] for r in self.side_runs(side) if key in r.values]

    def row(self, metric: MetricDef) -> Row:
        p, q = self.values("postern", metric.key), self.values("peer", metric.key)
        return Row(self.id, metric, median(p), median(q), p, q)

    def rows(self) -> list[Row]:
        return [self.row(m) for m in self.metrics]

    def cpu(self, side: Side) -> float | None:
        return median([r.cpu_s for r in self.side_runs(side) if r.cpu_s is not None])

    def peak_rss(self, side: Side) -> int | None:
        found = [r.peak_rss for r in self.side_runs(side) if r.peak_rss]
        return max(found) if found else None

    def peak_pss(self, side: Side) -> int | None:
        found = [r.peak_pss for r in self.side_runs(side) if r.peak_pss]
        return max(found) if found else None

    def foreign_load(self) -> float | None:
        """The most the rest of the machine was busy during any run, in cores."""
        found = [r.foreign_busy_cores for r in self.runs if r.foreign_busy_cores is not None]
        return max(found) if found else None

    # --- JSON -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkloadResult:
        metrics = [MetricDef(**m) for m in data.pop("metrics")]
        runs = [SideRun(**r) for r in data.pop("runs")]
        return cls(metrics=metrics, runs=runs, **data)


@dataclass(slots=True)
class Machine:
    cpu_model: str
    cores: int
    memory_bytes: int
    kernel: str
    python: str
    load_start: list[float]
    load_end: list[float] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    commit: str = ""
    started_at: str = ""
    finished_at: str = ""


@dataclass(slots=True)
class Report:
    machine: Machine
    workloads: dict[str, WorkloadResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": asdict(self.machine),
            "workloads": {k: w.to_json() for k, w in sorted(self.workloads.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        return cls(
            machine=Machine(**data["machine"]),
            workloads={
                k: WorkloadResult.from_json(dict(v)) for k, v in data.get("workloads", {}).items()
            },
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Report:
        return cls.from_json(json.loads(path.read_text()))
