"""One lock per artifact, so that two workers -- processes of one study, two ``clir-ot study`` runs on
one folder, or jobs on a cluster sharing the folder -- never build or write one artifact at once.

The lock of ``artifacts/<kind>/<label>-<key[:16]>/`` is the file beside it, ``<label>-<key[:16]>.lock``,
held with ``flock(LOCK_EX)`` while the step runs. The file names its owner (pid, host, start time)
for messages and ``--dry-run``. The kernel releases the lock when its owner dies, SIGKILL included
(on NFS the server does, once the dead client's lease runs out), so a crashed owner leaves only a
stale file: the next worker finds it unlocked, says whose it was, takes it over and resumes the
unfinished artifact. A released lock's file is removed while still locked; a worker that locked the
file just removed finds its inode gone from the path and tries again, so two owners never coexist.

File systems without ``flock`` (Lustre mounted without ``-o flock``) are refused with a
:class:`~clir_ot.errors.ConfigError` rather than left unprotected.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from clir_ot.errors import ConfigError
from clir_ot.io import PathLike

__all__ = ["ArtifactLock", "LockOwner", "lock_path"]

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock_path(folder: PathLike) -> Path:
    """The lock file of an artifact folder: its sibling ``<name>.lock``."""
    folder = Path(folder)
    return folder.with_name(folder.name + LOCK_SUFFIX)


@dataclass(frozen=True)
class LockOwner:
    """Who took a lock: ``pid`` on ``host`` at ``since`` (seconds since the epoch)."""

    pid: int
    host: str
    since: float

    @classmethod
    def me(cls) -> "LockOwner":
        return cls(os.getpid(), socket.gethostname(), time.time())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {time.strftime('%H:%M:%S', time.localtime(self.since))}"


class ArtifactLock:
    """An exclusive lock on ``path`` (see the module docstring); a context manager that waits.

    ``acquire(wait=False)`` returns at once; ``holder()`` says who holds it now (``None``: nobody,
    even if a dead owner's file is still there).
    """

    def __init__(self, path: PathLike, poll_s: float = 0.2):
        self.path = Path(path)
        self.poll_s = poll_s
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _lock(self, fd: int, flags: int) -> bool:
        try:
            fcntl.flock(fd, flags | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno in _UNSUPPORTED:
                raise ConfigError(f"{self.path}: the file system does not support flock locks ({err.strerror}); "
                                  "put the study folder on one that does (local disk, NFS; Lustre mounted "
                                  "with -o flock)") from None
            raise

    def _try_once(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not self._lock(fd, fcntl.LOCK_EX):
                os.close(fd)
                return False
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                os.close(fd)  # locked a file its owner removed on release: try the new one
                return self._try_once()
        except BaseException:
            os.close(fd)
            raise
        stale = self._read(fd)
        if stale is not None:
            logger.warning("%s: taking over a lock left by %s, which no longer holds it (it died?)",
                           self.path, stale.describe())
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(LockOwner.me().__dict__) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return True

    def acquire(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; with ``wait``, poll until it is free (or ``timeout`` seconds have passed)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this lock is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while not self._try_once():
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                return False
            if not told:
                owner = self.holder()
                logger.info("%s: waiting for %s", self.path.name, owner.describe() if owner else "another worker")
                told = True
            time.sleep(self.poll_s)
        return True

    def release(self) -> None:
        """Remove the lock file and release the lock (removed first, while still held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> LockOwner | None:
        """The owner holding the lock now, ``None`` if nobody does (this object included)."""
        if self._fd is not None:
            return self._read(self._fd)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if self._lock(fd, fcntl.LOCK_SH):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            return self._read(fd) or LockOwner(0, "unknown", 0.0)  # held, owner not yet written
        finally:
            os.close(fd)

    @staticmethod
    def _read(fd: int) -> LockOwner | None:
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            return LockOwner(int(data["pid"]), str(data["host"]), float(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None

    def __enter__(self) -> "ArtifactLock":
        self.acquire(wait=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()
