"""``python -m bench.relay_drain`` end to end on a small backlog: a real nats-server, the
relay process and Postfix's smtp-sink; every message arrives and the figures are there."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from bench import relay_drain


def test_a_small_backlog_drains_to_the_sink() -> None:
    # Not under pytest's tmp_path: smtp-sink runs as 'nobody' for root and must reach its
    # dump directory (pytest's base directory is private to its owner).
    work = Path(tempfile.mkdtemp(prefix="relay-drain-test-", dir="/var/tmp"))
    work.chmod(0o755)
    try:
        out = work / "drain.json"
        argv = ["--messages", "40", "--json", str(out), "--workdir", str(work), "--timeout", "120"]
        assert relay_drain.main(argv) == 0
        result = json.loads(out.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert result["arrived_at_sink"] == 40
    assert result["rate"] > 0
    assert result["cpu_ms_per_message"] >= 0  # 40 messages may take less than a clock tick
