"""``bench/results/latest.md`` and its PNG plots, from a :class:`bench.results.Report`.

The main table has one line per headline metric: workload, Postern, peer, ratio, target,
CPU seconds and peak RSS of each side. Each workload then gets its own section: sizes,
every metric (with each run's figure, so the median can be checked), how busy the machine
was, notes and errors. A workload a side cannot run yet says why instead of a figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.results import SIDES, Machine, Report, Row, Side, WorkloadResult

BUSY_CORES = 0.15  # other work above this (in cores) during a run marks it as busy
DASH = "—"


# --- number formatting --------------------------------------------------------------------
def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return DASH
    if unit == "ms":
        if value < 1:  # sub-millisecond latencies (Dovecot's STORE) need two places
            return f"{value:.2f} ms"
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return DASH
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"


def fmt_target(row: Row) -> str:
    t = row.metric.target
    if t is None:
        return DASH
    met = row.met
    mark = "" if met is None else (" ✅" if met else " ❌")
    return f"≥ {t:g}×{mark}"


def fmt_bytes(n: int | None) -> str:
    if not n:
        return DASH
    return f"{n / 2**20:,.0f} MiB"


def fmt_cpu(s: float | None) -> str:
    return DASH if s is None else f"{s:.1f}"


def fmt_pair(a: str, b: str) -> str:
    return f"{a} / {b}"


def fmt_runs(values: list[float], unit: str) -> str:
    return ", ".join(fmt_value(v, unit).rsplit(" ", 1)[0] for v in values) or DASH


# --- markdown ---------------------------------------------------------------------------
def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _side_cell(w: WorkloadResult, row: Row, side: str, *, first: bool = True) -> str:
    value = row.postern if side == "postern" else row.peer
    if value is not None:
        n = len(row.postern_runs if side == "postern" else row.peer_runs)
        text = fmt_value(value, row.metric.unit)
        runs = len({r.run for r in w.runs})
        return text if n >= runs else f"{text} ({n} of {runs} runs)"
    why = w.unavailable.get(side)
    if why:
        return why if first else "n/a"
    failed = [r.error for r in w.runs if r.side == side and r.error]
    if failed:
        return f"failed: {failed[0]}"
    return DASH


def _mem(w: WorkloadResult, side: Side) -> str:
    rss = w.peak_rss(side)
    if not rss:
        return DASH
    return f"{fmt_bytes(rss)} [{fmt_bytes(w.peak_pss(side))}]"


def main_table(report: Report) -> list[str]:
    lines = [
        "| Workload | Postern | Peer | Ratio | Target | CPU s (Postern / peer) "
        "| Peak RSS [PSS] (Postern / peer) |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in sorted(report.workloads.values(), key=lambda w: w.id):
        first = True
        for row in w.rows():
            if not row.metric.main:
                continue
            name = f"**{w.id}** {w.title} — {row.metric.label} (peer: {w.peer_name})"
            if not first:
                name = f"{w.id} — {row.metric.label}"
            cpu = rss = ""
            if first:
                cpu = fmt_pair(fmt_cpu(w.cpu("postern")), fmt_cpu(w.cpu("peer")))
                rss = fmt_pair(_mem(w, "postern"), _mem(w, "peer"))
            cells = [
                name,
                _side_cell(w, row, "postern", first=first),
                _side_cell(w, row, "peer", first=first),
                fmt_ratio(row.ratio),
                fmt_target(row),
                cpu,
                rss,
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            first = False
    return lines


def machine_lines(m: Machine, report: Report) -> list[str]:
    v = m.versions
    busiest = max(
        ((w.foreign_load() or 0.0, w.id) for w in report.workloads.values()), default=(0.0, "")
    )
    lines = [
        f"- CPU: {m.cpu_model}, **{m.cores} cores**; {m.memory_bytes / 2**30:.1f} GiB RAM; "
        f"Linux {m.kernel}; Python {m.python}",
        f"- Load average (1/5/15 min) at start: {' '.join(map(str, m.load_start))}; "
        f"at end: {' '.join(map(str, m.load_end)) or DASH}",
        "- Software: "
        + ", ".join(
            f"{k} {v.get(k, '?')}" for k in ("postfix", "dovecot", "spamd", "clamd", "nats-server")
        ),
        f"- Postern commit {m.commit or '?'}; run {m.started_at} → {m.finished_at or '?'}",
    ]
    if busiest[0] > BUSY_CORES:
        lines.append(
            f"- ⚠️ **Busy machine**: other work used up to {busiest[0]:.2f} cores during the "
            f"runs (most in {busiest[1]}); these figures are not final."
        )
    else:
        lines.append(
            f"- Quiet machine: other work used at most {busiest[0]:.2f} cores during any run."
        )
    return lines


def workload_section(w: WorkloadResult) -> list[str]:
    lines = [f"### {w.id}: {w.title} (peer: {w.peer_name})", ""]
    if w.params:
        lines.append("Parameters: " + ", ".join(f"{k}={v}" for k, v in w.params.items()) + ".")
    for note in w.notes:
        lines.append(f"- {note}")
    for side in SIDES:
        if side in w.unavailable:
            lines.append(f"- {side}: {w.unavailable[side]}")
    load = w.foreign_load()
    lines.append(
        f"- Measured {w.started_at} → {w.finished_at}; load average before "
        f"{' '.join(map(str, w.load_before))}, after {' '.join(map(str, w.load_after))}; "
        + (
            f"other work on the machine during runs: up to {load:.2f} cores"
            + (" (**busy**)" if load > BUSY_CORES else "")
            if load is not None
            else "no runs"
        )
    )
    lines.append("")
    rows = [r for r in w.rows() if r.postern is not None or r.peer is not None]
    if rows:
        lines += [
            "| Metric | Postern | Peer | Ratio | Target | Postern runs | Peer runs |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            u = row.metric.unit
            cells = [
                f"{row.metric.label} ({u})",
                fmt_value(row.postern, u),
                fmt_value(row.peer, u),
                fmt_ratio(row.ratio),
                fmt_target(row),
                fmt_runs(row.postern_runs, u),
                fmt_runs(row.peer_runs, u),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
        res = []
        for side in SIDES:
            if w.side_runs(side):
                gen = [r.loadgen_cpu_s for r in w.side_runs(side) if r.loadgen_cpu_s is not None]
                res.append(
                    f"{side}: CPU {fmt_cpu(w.cpu(side))} s (median), peak RSS "
                    f"{fmt_bytes(w.peak_rss(side))}, peak PSS {fmt_bytes(w.peak_pss(side))}"
                    + (f", load generator CPU {sorted(gen)[len(gen) // 2]:.1f} s" if gen else "")
                )
        lines.append("Resources: " + "; ".join(res) + ".")
        lines.append("")
    for side in SIDES:
        notes = sorted({n for r in w.runs if r.side == side for n in r.notes if n})
        if notes:
            lines.append(f"Run notes ({side}): " + "; ".join(notes[:12]) + ".")
            lines.append("")
    for label, summary in sorted(w.profiles.items()):
        lines += [f"Profile of Postern's {label} (py-spy, run 1):", "", "```", *summary, "```", ""]
    for r in w.errors():
        lines.append(f"- ❗ {r.side} run {r.run + 1} failed: {r.error}")
    if w.errors():
        lines.append("")
    return lines


def _runs_text(runs: int) -> str:
    return "the runs" if runs == 0 else ("1 run" if runs == 1 else f"{runs} runs")


def _runs_of_report(report: Report) -> str:
    counts = {wid: len({r.run for r in w.runs}) for wid, w in report.workloads.items() if w.runs}
    usual = max(set(counts.values()), key=list(counts.values()).count, default=0)
    others = [f"{wid}: {n}" for wid, n in sorted(counts.items()) if n != usual]
    text = _runs_text(usual)
    return f"{text} ({', '.join(others)})" if others else text


def render_markdown(report: Report, plots: Iterable[str]) -> str:
    quick = any(w.quick for w in report.workloads.values())
    lines = [
        "# Postern benchmarks, side by side with Postfix and Dovecot",
        "",
        "Written by `make bench` (`python -m bench`; see `bench/README.md`). Each figure is "
        f"the median of {_runs_of_report(report)}; each run measures both sides on this machine, "
        "one after the other. **Ratio** = how many times better Postern is "
        "(throughput: Postern ÷ peer; latency: peer ÷ Postern), so > 1 favours Postern. "
        "CPU s is the median CPU time of one run of each side's processes (psutil over the "
        "process trees, reaped children included); peak RSS is the largest sum of RSS over a "
        "side's processes, which counts shared pages once per process and so overstates "
        "multi-process servers; PSS in brackets shares them out fairly.",
        "",
    ]
    if quick:
        lines += ["> **Quick mode** (`--quick`): small sizes for smoke-testing, not figures.", ""]
    lines += ["## Machine", "", *machine_lines(report.machine, report), ""]
    lines += ["## Results", "", *main_table(report), ""]
    plots = list(plots)
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += ["## Workloads", ""]
    for w in sorted(report.workloads.values(), key=lambda w: w.id):
        lines += workload_section(w)
    return "\n".join(lines).rstrip() + "\n"


# --- plots ----------------------------------------------------------------------------
def write_plots(report: Report, outdir: Path) -> list[str]:
    """PNG plots beside the markdown; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    rows = [
        (w, r)
        for w in sorted(report.workloads.values(), key=lambda w: w.id)
        for r in w.rows()
        if r.metric.main and r.ratio is not None
    ]
    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
        labels = [f"{w.id} {r.metric.label}" for w, r in rows]
        ratios = [r.ratio or 0.0 for _, r in rows]
        colors = [
            "#2a9d8f" if r.met else ("#e76f51" if r.met is False else "#8d99ae") for _, r in rows
        ]
        y = list(range(len(rows)))
        # Bars grow from parity (1×) on a log scale: left = the peer is better.
        ax.barh(y, [r - 1.0 for r in ratios], left=1.0, color=colors)
        ax.set_xscale("log")
        lo = min([*ratios, *(r.metric.target or 1.0 for _, r in rows), 1.0]) / 1.6
        hi = max([*ratios, *(r.metric.target or 1.0 for _, r in rows), 1.0]) * 1.6
        ax.set_xlim(lo, hi)
        ticks = [t for t in (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100) if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
        ax.minorticks_off()
        for i, (_, r) in enumerate(rows):
            if r.metric.target is not None:
                ax.plot([r.metric.target] * 2, [i - 0.4, i + 0.4], color="black", lw=2)
            ratio = r.ratio or 1.0
            ax.text(
                ratio * (1.04 if ratio >= 1 else 0.96),
                i,
                f"{ratio:.2f}×",
                va="center",
                ha="left" if ratio >= 1 else "right",
                fontsize=8,
            )
        ax.axvline(1.0, color="grey", ls="--", lw=1)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ratio, log scale (> 1 favours Postern); black tick = target")
        ax.set_title("Postern vs Postfix/Dovecot (median of runs)")
        fig.tight_layout()
        fig.savefig(outdir / "ratios.png", dpi=110)
        plt.close(fig)
        made.append("ratios.png")
    bars = [
        (w, r)
        for w in sorted(report.workloads.values(), key=lambda w: w.id)
        for r in w.rows()
        if r.metric.main and (r.postern is not None or r.peer is not None)
    ]
    if bars:
        cols = min(3, len(bars))
        nrows = (len(bars) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
        for ax, (w, r) in zip(axes.flat, bars, strict=False):
            vals = [r.postern or 0.0, r.peer or 0.0]
            ax.bar(["Postern", w.peer_name], vals, color=["#264653", "#e9c46a"])
            ax.set_title(f"{w.id}: {r.metric.label}", fontsize=8)
            ax.set_ylabel(r.metric.unit, fontsize=8)
            ax.tick_params(labelsize=7)
            for i, v in enumerate(vals):
                ax.text(i, v, fmt_value(v, "").strip() if v else "n/a", ha="center", fontsize=7)
        for ax in list(axes.flat)[len(bars) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(outdir / "figures.png", dpi=110)
        plt.close(fig)
        made.append("figures.png")
    w4 = report.workloads.get("W4")
    if w4 is not None and (w4.side_runs("postern") or w4.side_runs("peer")):
        kinds = [m.key.split(".", 1)[1] for m in w4.metrics if m.key.startswith("rate.")]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
        xs = list(range(len(kinds)))
        for offset, side, color in ((-0.2, "postern", "#264653"), (0.2, "peer", "#e9c46a")):
            rates = [_median(w4, side, f"rate.{k}") for k in kinds]
            lats = [_median(w4, side, f"p50.{k}") for k in kinds]
            label = "Postern" if side == "postern" else w4.peer_name
            a1.bar([x + offset for x in xs], rates, width=0.4, label=label, color=color)
            a2.bar([x + offset for x in xs], lats, width=0.4, label=label, color=color)
        a2.set_yscale("log")
        for ax, title, unit in (
            (a1, "W4 rate per command", "cmd/s"),
            (a2, "median latency (log scale)", "ms"),
        ):
            ax.set_xticks(xs, kinds, rotation=45, ha="right", fontsize=7)
            ax.set_title(title)
            ax.set_ylabel(unit)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(outdir / "w4_commands.png", dpi=110)
        plt.close(fig)
        made.append("w4_commands.png")
    return made


def _median(w: WorkloadResult, side: str, key: str) -> float:
    from bench.stats import median

    return median(w.values(side, key)) or 0.0  # type: ignore[arg-type]


def write_report(report: Report, outdir: Path, *, name: str = "latest") -> Path:
    """Write ``<name>.md``, ``<name>.json`` and the plots into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, outdir)
    path = outdir / f"{name}.md"
    path.write_text(render_markdown(report, plots))
    report.save(outdir / f"{name}.json")
    return path
