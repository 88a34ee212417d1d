"""Room on the store's file system: when delivery must pause, and when it may resume.

Delivery pauses when the free space (``statvfs``, what an unprivileged writer may use)
drops below ``min_free`` or a write fails with ENOSPC, and resumes only once *twice*
``min_free`` is free again and a durable probe write of 1 MiB succeeds in full. The gap
between the two marks is the hysteresis: a disk hovering at the threshold does not make
delivery flap. Health reports the live figure, so ``/healthz`` never says "storage ok" on a
disk that is below the threshold.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROBE_BYTES = 1024 * 1024
RESUME_FACTOR = 2  # resume at RESUME_FACTOR × min_free


def free_bytes(root: Path) -> int:
    """Bytes an unprivileged writer may still use on ``root``'s file system."""
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def probe_write(root: Path, size: int = PROBE_BYTES) -> bool:
    """True when ``size`` bytes are written below ``root`` in full and fsynced (the file is
    removed again). A short write — the kernel took only part of the buffer because the
    disk filled — is a failure, not a success."""
    path = root / f".probe-{os.getpid()}"
    data = memoryview(b"\0" * size)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            done = 0
            while done < size:
                n = os.write(fd, data[done:])
                if n <= 0:
                    return False
                done += n
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


class SpaceGuard:
    """The free-space threshold with hysteresis for one directory."""

    def __init__(self, root: Path, min_free: int) -> None:
        self.root = Path(root)
        self.min_free = min_free

    def free(self) -> int:
        try:
            return free_bytes(self.root)
        except OSError:
            return 0

    def low(self) -> bool:
        """Below the pause mark now."""
        return self.free() < self.min_free

    def room_again(self) -> bool:
        """Above the resume mark, and a full probe write succeeds (blocking: run it in a
        thread)."""
        if self.free() < RESUME_FACTOR * self.min_free:
            return False
        return probe_write(self.root)
