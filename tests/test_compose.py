"""compose/ stays consistent with the code: every setting it sets exists, every service it
runs exists, every file it mounts is in the repository, HAProxy targets the filters'
PROXY-protocol ports. (No Docker engine runs in CI; this is what can be checked without.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

from mailcore import config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
SETTINGS = [
    config.FilterSettings,
    config.StoreSettings,
    config.WebmailSettings,
    config.MirrorSettings,
    config.ClusterSettings,
]


def _known_env_names() -> set[str]:
    names = {"POSTERN_CONFIG"}
    for cls in SETTINGS:
        for field, info in cls.model_fields.items():
            alias = info.validation_alias
            choices = getattr(alias, "choices", None)
            if choices:
                names.update(c for c in choices if isinstance(c, str) and c.isupper())
            names.add(config.env_name(cls, field))
    return names


def _load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE / name).read_text()))


def _env_vars(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for svc in doc["services"].values():
        env = svc.get("environment") or {}
        found.update(k for k in env if k.startswith("POSTERN_"))
    return found


def test_every_setting_named_exists() -> None:
    known = _known_env_names()
    used = _env_vars(_load("compose.yaml")) | _env_vars(_load("compose.ha.yaml"))
    example = (COMPOSE / "postern.env.example").read_text()
    used |= set(re.findall(r"^#?\s*(POSTERN_[A-Z0-9_]+)=", example, re.M))
    unknown = sorted(used - known)
    assert not unknown, f"compose sets settings that do not exist: {unknown}"


def test_every_service_module_and_file_exists() -> None:
    doc = _load("compose.yaml")
    for name, svc in doc["services"].items():
        command = svc.get("command")
        if isinstance(command, list) and command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, name
        build = svc.get("build")
        if build:
            assert (COMPOSE / build["context"] / build["dockerfile"]).exists(), name
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
    cluster = _load("compose.ha.yaml")
    for svc in cluster["services"].values():
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE / source).exists(), source


def test_haproxy_targets_the_proxy_ports() -> None:
    filt = _load("compose.yaml")["services"]["filter"]["environment"]
    proxy_ports = {
        filt["POSTERN_PROXY_SMTP_PORT"],
        filt["POSTERN_PROXY_SUBMISSION_PORT"],
        filt["POSTERN_PROXY_SUBMISSIONS_PORT"],
    }
    cfg = (COMPOSE / "haproxy.cfg").read_text()
    targets = set(re.findall(r"filter:(\d+) send-proxy-v2", cfg))
    assert targets == proxy_ports


def test_nats_configs_fsync_every_write() -> None:
    for conf in (COMPOSE / "nats").glob("*.conf"):
        assert "sync_interval: always" in conf.read_text(), conf.name
