"""W7's pieces that run without a browser load: Roundcube's private configuration and
database, the percentile, and the metric names the driver reports."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.loadgen.web_pages import pct
from bench.peers.roundcube import INSTALL, Roundcube
from bench.workloads.base import Context
from bench.workloads.w7_webmail import LEVELS, WebmailWorkload
from tests.support.daemons import missing


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert pct(values, 0.5) == 51.0 and pct(values, 0.95) == 96.0
    assert pct([], 0.95) == 0.0


def test_metrics_cover_every_level(tmp_path: Path) -> None:
    w = WebmailWorkload()
    ctx = Context(workdir=tmp_path, rundir=tmp_path, quick=True)
    keys = {m.key for m in w.metric_defs(ctx)}
    assert keys == {f"{k}_p95_{n}" for k in ("list", "message") for n in LEVELS} | {
        f"cpu_ms_{n}" for n in LEVELS
    }
    assert w.mailbox_accounts(ctx) == {"webmail@bench.test": w.params(ctx)["messages"]}


def test_roundcube_private_config(tmp_path: Path) -> None:
    if Roundcube.available() is not None:
        missing("Roundcube (roundcube-core, roundcube-sqlite3, php-cli)")
    rc = Roundcube(tmp_path / "rc", imap_port=14300, port=18080)
    rc.write()
    conf = (tmp_path / "rc" / "config" / "config.inc.php").read_text()
    assert "$config['imap_host'] = '127.0.0.1:14300';" in conf
    assert (tmp_path / "rc" / "config" / "defaults.inc.php").exists()
    with sqlite3.connect(tmp_path / "rc" / "roundcube.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert {"users", "session"} <= tables
    assert INSTALL.exists()
