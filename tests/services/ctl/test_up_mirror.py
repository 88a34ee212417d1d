"""``mailctl up --mirror`` end to end: the pair runs without Docker, the banner names both
stores, and from the same environment ``mailctl probe``, ``mailctl mirror status`` and
``mailctl status`` find both; the probe passes on the healthy pair and fails loudly with
a store down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.ctl import daemons
from tests.services.ctl.test_up import Up, _env

pytestmark = pytest.mark.slow

MIRROR_PORT_VARS = [
    "POSTERN_MIRROR_NATS_PORT",
    "POSTERN_MIRROR_IMAP_PORT",
    "POSTERN_MIRROR_POP3_PORT",
    "POSTERN_MIRROR_IMAPS_PORT",
    "POSTERN_MIRROR_POP3S_PORT",
    "POSTERN_MIRROR_STORE_OPS_PORT",
]


def mailctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "mailctl")
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=300)


def test_up_mirror_pair_probe_and_status(tmp_path: Path) -> None:
    env, _ = _env(scanners=False)
    for var in MIRROR_PORT_VARS:
        env[var] = str(daemons.free_port())
    env["POSTERN_DATA"] = str(tmp_path / "var")  # what the other commands read
    up = Up(tmp_path / "var", env, "--mirror")
    try:
        up.wait_for("Mirrored pair", timeout=120)
        text = "\n".join(up.lines)
        assert f"IMAP 127.0.0.1:{env['POSTERN_IMAP_PORT']}" in text
        assert f"IMAP 127.0.0.1:{env['POSTERN_MIRROR_IMAP_PORT']}" in text
        assert f"POP3 127.0.0.1:{env['POSTERN_MIRROR_POP3_PORT']}" in text
        assert f"nats://127.0.0.1:{env['POSTERN_MIRROR_NATS_PORT']}" in text
        for child in ("store-b", "mirror-a", "mirror-b", "nats-b"):
            assert up.pid(child) > 0

        ok = mailctl(env, "probe")
        assert ok.returncode == 0, ok.stderr
        assert f"127.0.0.1:{env['POSTERN_IMAP_PORT']} (store-a): read back" in ok.stdout
        assert f"127.0.0.1:{env['POSTERN_MIRROR_IMAP_PORT']} (store-b): read back" in ok.stdout
        assert "probe OK" in ok.stdout

        st = mailctl(env, "mirror", "status", "--json")
        assert st.returncode == 0, st.stderr
        roles = json.loads(st.stdout)["roles"]
        assert (roles["this"]["role"], roles["peer"]["role"]) == ("master", "slave")
        assert roles["this"]["taking_inbound"] and not roles["peer"]["taking_inbound"]

        status = mailctl(env, "status")
        assert status.returncode == 0, status.stderr
        assert f":{env['POSTERN_MIRROR_STORE_OPS_PORT']}: delivered" in status.stdout

        # a store down (stopped, so the supervisor does not restart it): loud failure
        store_b = up.pid("store-b")
        os.kill(store_b, signal.SIGSTOP)
        try:
            bad = mailctl(env, "probe", "--timeout", "8")
        finally:
            os.kill(store_b, signal.SIGCONT)
        assert bad.returncode == 1
        assert "PROBE FAILED: imap 127.0.0.1:" in bad.stderr
        assert "(store-b)" in bad.stderr
    finally:
        assert up.stop() == 0
    assert not (tmp_path / "var" / "mirror" / "pair.json").exists()
