"""The fuzz harness catches and keeps a crash; every kept crash and the hostile MIME corpus
replay cleanly through the real parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import strategies as st

from reliability import fuzz
from reliability.hostile.mime import CORPUS

TARGETS = {t.name: t for t in fuzz.TARGETS}


def _buggy(data: bytes) -> None:
    if b"\x07" in data:
        raise KeyError("planted bug")
    if data.startswith(b"x"):
        raise ValueError("the parser's own refusal")


def test_a_planted_crash_is_found_shrunk_and_saved(tmp_path: Path) -> None:
    target = fuzz.Target("planted", _buggy, (ValueError,), st.binary(max_size=50))
    tried, crash = fuzz.fuzz(target, 30, save_to=tmp_path)
    assert crash is not None and tried > 0
    assert crash.data == b"\x07"  # shrunk to the minimal input
    assert "planted bug" in crash.error
    assert crash.saved is not None and crash.saved.read_bytes() == b"\x07"


def test_refusals_are_not_crashes(tmp_path: Path) -> None:
    target = fuzz.Target("refuses", _buggy, (ValueError,), st.just(b"xyz"))
    _, crash = fuzz.fuzz(target, 1, save_to=tmp_path)
    assert crash is None and not list(tmp_path.iterdir())


def test_every_parser_survives_a_short_run(tmp_path: Path) -> None:
    for target in fuzz.TARGETS:
        tried, crash = fuzz.fuzz(target, 0.5, save_to=tmp_path, batch=100)
        assert crash is None, crash
        assert tried > 0


def test_kept_crashes_no_longer_crash() -> None:
    assert fuzz.REGRESSIONS.is_dir()
    failing = []
    for path in sorted(fuzz.REGRESSIONS.glob("*.bin")):
        target = TARGETS[path.name.split("-", 1)[0]]
        if fuzz.replay(target, path.read_bytes()) is not None:
            failing.append(path.name)
    assert failing == []


@pytest.mark.parametrize("label,make", CORPUS, ids=[label for label, _ in CORPUS])
def test_hostile_mime_corpus_parses(label: str, make: object) -> None:
    assert callable(make)
    data = make("rid-1")
    assert fuzz.replay(TARGETS["mime"], data) is None
