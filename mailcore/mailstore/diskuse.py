"""How much disk the store uses and how much is left, exported as gauges for
``mailctl status`` and Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from mailcore import metrics


def disk_use(root: Path) -> tuple[int, int]:
    """``(bytes allocated below root, bytes free for unprivileged writers)``."""
    used = 0
    stack = [str(root)]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    vfs = os.statvfs(root)
    return used, vfs.f_bavail * vfs.f_frsize


async def report_forever(root: Path, interval: float = 60.0) -> None:
    """Refresh the disk gauges every ``interval`` seconds (the walk runs in a thread)."""
    while True:
        with contextlib.suppress(OSError):
            used, free = await asyncio.to_thread(disk_use, root)
            metrics.STORE_DISK_USED.set(used)
            metrics.STORE_DISK_FREE.set(free)
        await asyncio.sleep(interval)
