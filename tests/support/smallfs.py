"""A small file system for disk-full tests: a tmpfs of a few MiB mounted on a directory.

Mounting needs root (CAP_SYS_ADMIN). Where it is not possible the test is skipped with the
reason on a developer's machine and fails under ``CI=true`` (CI runs as root).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class SmallFs:
    """A mounted tmpfs of ``size`` bytes; :meth:`fill` takes space, :meth:`free` returns it."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._ballast = path / ".ballast"

    @property
    def available(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> int:
        """Write ballast until at most ``leave`` bytes are left; the bytes written."""
        written = 0
        chunk = b"\0" * (64 * 1024)
        with open(self._ballast, "ab") as fh:
            while self.available > leave:
                want = min(len(chunk), self.available - leave)
                try:
                    written += fh.write(chunk[:want])
                    fh.flush()
                except OSError:
                    break
        return written

    def free(self) -> None:
        """Remove the ballast: the space comes back."""
        with contextlib.suppress(FileNotFoundError):
            self._ballast.unlink()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _refuse(reason: str) -> None:
    if in_ci():
        pytest.fail(f"a small file system is required in CI: {reason}")
    pytest.skip(f"no small file system: {reason}")


@contextlib.contextmanager
def small_fs(path: Path, size: int) -> Iterator[SmallFs]:
    """Mount a tmpfs of ``size`` bytes on ``path`` for the block; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        _refuse("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        _refuse(f"mount failed: {done.stderr.strip()}")
    try:
        yield SmallFs(path, size)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
