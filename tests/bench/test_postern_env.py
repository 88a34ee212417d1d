"""The variables the harness gives Postern's services are real settings, with the values
the workloads need (a renamed setting must fail here, not silently in a benchmark)."""

from __future__ import annotations

from pathlib import Path

from bench.postern import MirrorLink, Postern, Scanners
from mailcore.config import (
    ALL_SETTINGS,
    CommonSettings,
    FilterSettings,
    MirrorSettings,
    StoreSettings,
    env_name,
)


def known_variables() -> set[str]:
    names = set()
    for cls in (CommonSettings, *ALL_SETTINGS):
        for field, info in cls.model_fields.items():
            names.add(env_name(cls, field))
            alias = info.validation_alias
            for choice in getattr(alias, "choices", []):
                if isinstance(choice, str) and choice.startswith("POSTERN_"):
                    names.add(choice)
    return names


def test_every_postern_variable_is_a_setting(tmp_path: Path) -> None:
    p = Postern(tmp_path, "bench.test", {"u@bench.test": "pw"}, scanners=Scanners(1783, 13310))
    p.mirror = MirrorLink("store-a", "store-b", "nats://127.0.0.1:1")
    env = {k: v for k, v in p.env().items() if k.startswith("POSTERN_")}
    assert set(env) - known_variables() == set()


def test_services_load_the_harness_settings(tmp_path: Path, monkeypatch: object) -> None:
    p = Postern(tmp_path, "bench.test", {"u@bench.test": "pw"})
    env = p.env()
    for k, v in env.items():
        if k.startswith("POSTERN_"):
            monkeypatch.setenv(k, v)  # type: ignore[attr-defined]
    store = StoreSettings()
    filt = FilterSettings()
    assert store.imap_port == p.imap_port and store.pop3_port == p.pop3_port
    assert store.imaps_port == 0 and store.pop3s_port == 0
    assert store.ops_port == p.store_ops_port and filt.ops_port == p.filter_ops_port
    assert filt.smtp_port == p.smtp_port and filt.submission_port == 0
    assert not filt.spamd_enabled and not filt.clamd_enabled
    assert store.nats_url == filt.nats_url == p.nats_url
    assert store.allow_plaintext_auth == "loopback"
    assert store.max_connections_per_user >= 1000 and filt.max_connections_per_ip >= 1000
    assert store.listen_host == "127.0.0.1"


def test_w6_mirror_process_loads_its_link(tmp_path: Path, monkeypatch: object) -> None:
    p = Postern(tmp_path, "bench.test", {"u@bench.test": "pw"})
    p.mirror = MirrorLink("store-b", "store-a", "nats://127.0.0.1:4999")
    for k, v in p.env().items():
        if k.startswith("POSTERN_"):
            monkeypatch.setenv(k, v)  # type: ignore[attr-defined]
    s = MirrorSettings()
    assert (s.mirror_node, s.mirror_peer) == ("store-b", "store-a")
    assert s.peer_nats_url == "nats://127.0.0.1:4999" and s.ops_port == p.mirror_ops_port
    assert s.nats_url == p.nats_url  # its own store's NATS, not the peer's


def test_the_mirror_modes_settings_reach_the_stores_and_are_real(tmp_path: Path) -> None:
    """W6s and W6f (bench/workloads/w6_modes.py): synchronous mode on the master, and a
    follower, by settings the store and mirror really read."""
    from bench.workloads.w6_modes import FollowerWorkload, SyncModeWorkload

    sync = SyncModeWorkload().mode()["master_env"]
    p = Postern(tmp_path, "bench.test", {"u@bench.test": "pw"}, mirror_env=sync)
    p.mirror = MirrorLink("store-a", "store-b", "nats://127.0.0.1:1")
    env = p.env()
    assert env["POSTERN_MIRROR_SYNC_PEER"] == "store-b"
    assert set(sync) <= known_variables()
    assert {"POSTERN_MIRROR_FOLLOWERS", "POSTERN_MIRROR_FOLLOWER"} <= known_variables()
    assert FollowerWorkload().mode() == {"follower": True}
