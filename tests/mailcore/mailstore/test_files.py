"""Batch file writes: both sync strategies, and nothing left behind on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.mailstore import StorageFull
from mailcore.mailstore.files import FileWriter


@pytest.mark.parametrize("use_syncfs", [True, False])
def test_batch_written_and_synced(tmp_path: Path, use_syncfs: bool) -> None:
    writer = FileWriter(durable=True, use_syncfs=use_syncfs)
    try:
        items = [
            (tmp_path / f"d{i % 3}" / str(i), f"message {i}".encode() * 100) for i in range(600)
        ]
        writer.write_batch(tmp_path, items)
        for path, data in items:
            assert path.read_bytes() == data
            assert path.stat().st_mode & 0o777 == 0o600
    finally:
        writer.close()


@pytest.mark.parametrize("use_syncfs", [True, False])
def test_full_disk_removes_the_whole_batch(tmp_path: Path, use_syncfs: bool) -> None:
    writer = FileWriter(durable=True, use_syncfs=use_syncfs)
    try:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "300").symlink_to("/dev/full")
        items = [(tmp_path / "d" / str(i), b"x" * 1000) for i in range(400)]
        with pytest.raises(StorageFull):
            writer.write_batch(tmp_path, items)
        assert list((tmp_path / "d").iterdir()) == []
    finally:
        writer.close()
