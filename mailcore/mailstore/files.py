"""Message files, written durably in batches.

A batch of files is written, then made durable together: with ``syncfs(2)`` on Linux
≥ 5.8 (one call flushes every file and directory entry of the file system and reports
write-back errors), else with ``fsync`` of every file from a thread pool and of every
directory touched. Only then does the caller commit the index rows that name the files,
so a crash can leave a file without a row (cleaned at the next open) but never a row
without its whole file.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import errno
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from mailcore.mailstore.errors import StorageFull

_FULL = (errno.ENOSPC, errno.EDQUOT)
_CHUNK = 256  # files open at once while fsyncing one by one
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _load_syncfs() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if platform.system() != "Linux":
        return None
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):  # older kernels do not report write-back errors
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()
_SYNCFS_FROM = 16  # files at once from which FileWriter.sync uses syncfs


def is_full(exc: OSError) -> bool:
    return exc.errno in _FULL


def storage_error(exc: OSError) -> OSError | StorageFull:
    """ENOSPC/EDQUOT as :class:`StorageFull`, everything else unchanged."""
    if is_full(exc):
        return StorageFull(f"disk full: {exc.strerror}")
    return exc


class FileWriter:
    """Writes batches of message files; ``durable=False`` skips every sync (tests, tools)."""

    def __init__(self, *, durable: bool = True, use_syncfs: bool | None = None) -> None:
        self.durable = durable
        self.use_syncfs = (_SYNCFS is not None) if use_syncfs is None else use_syncfs
        self._pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="fsync")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def write_batch(
        self, root: Path, items: Sequence[tuple[Path, bytes]], *, sync: bool = True
    ) -> None:
        """Write every file and make the batch durable; on failure nothing is left behind.

        ``root`` is the directory whose file system is synced (the account directory).
        ``sync=False`` leaves the files to a later :meth:`sync` (group commit: one sync
        for the files of several writes). Raises :class:`StorageFull` when the disk is full.
        """
        written: list[Path] = []
        dirs: set[Path] = set()
        try:
            for start in range(0, len(items), _CHUNK):
                self._write_chunk(items[start : start + _CHUNK], written, dirs, sync=sync)
            if self.durable and sync:
                if self.use_syncfs and _SYNCFS is not None:
                    _syncfs(root)
                else:
                    for d in dirs:
                        sync_dir(d)
        except OSError as exc:
            for path in written:
                remove(path)
            raise storage_error(exc) from exc

    def sync(self, root: Path, paths: Sequence[Path]) -> None:
        """Make files written with ``sync=False`` durable, with their directory entries:
        one ``syncfs`` for many files, else an ``fsync`` per file and directory (a few
        files: ``syncfs`` would also wait for every other writer of the file system)."""
        if not self.durable or not paths:
            return
        try:
            if self.use_syncfs and _SYNCFS is not None and len(paths) >= _SYNCFS_FROM:
                _syncfs(root)
                return
            fds = [os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)) for p in paths]
            try:
                if len(fds) == 1:
                    os.fsync(fds[0])
                else:
                    for fut in [self._pool.submit(os.fsync, fd) for fd in fds]:
                        fut.result()
            finally:
                for fd in fds:
                    os.close(fd)
            # the shard directories, and their parent for a shard made just now
            for d in {p.parent for p in paths} | {p.parent.parent for p in paths}:
                sync_dir(d)
        except OSError as exc:
            raise storage_error(exc) from exc

    def _write_chunk(
        self,
        items: Sequence[tuple[Path, bytes]],
        written: list[Path],
        dirs: set[Path],
        *,
        sync: bool = True,
    ) -> None:
        per_file_sync = sync and self.durable and not (self.use_syncfs and _SYNCFS is not None)
        fds: list[int] = []
        try:
            for path, data in items:
                parent = path.parent
                if parent not in dirs:
                    if not parent.is_dir():
                        parent.mkdir(parents=True, exist_ok=True)
                        dirs.add(parent.parent)  # the new directory's own entry
                    dirs.add(parent)
                fd = os.open(path, _OPEN_FLAGS, 0o600)
                written.append(path)
                fds.append(fd)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if not per_file_sync:
                    os.close(fds.pop())
            if len(fds) == 1:
                os.fsync(fds[0])
            elif fds:
                for fut in [self._pool.submit(os.fsync, fd) for fd in fds]:
                    fut.result()
        finally:
            for fd in fds:
                os.close(fd)


def _syncfs(root: Path) -> None:
    assert _SYNCFS is not None
    fd = os.open(root, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
