"""One gateway per state directory: an exclusive lock taken before anything else runs.

Two gateways on one state directory would log the same agents in (LiveVox
hands both the same sessions) and the second, stopping, would log them out
under the first. So the lock is taken while the command line is read, before
any service is built and before any request to LiveVox: a second instance
fails at once, naming the directory and the PID that holds it.

The lock is ``flock`` on ``<state_dir>/lvgateway.pid``, which holds the PID
of its owner. The kernel drops it when the process dies, however it dies, so
a stale file never blocks a restart. It is a different file from the call
store's own lock (``calls.lock``), which stays as a second guard.
"""

from __future__ import annotations

import fcntl
import os

import attrs

LOCK_NAME = "lvgateway.pid"


class StateDirectoryInUseError(Exception):
    """Another process holds the state directory's lock."""

    def __init__(self, state_dir: str, pid: int | None) -> None:
        super().__init__(state_dir, pid)
        self.state_dir = state_dir
        self.pid = pid

    def __str__(self) -> str:
        holder = f"PID {self.pid}" if self.pid is not None else "another process"
        return f"state directory {self.state_dir} is in use by {holder}"


@attrs.define
class StateLock:
    """The held lock of one state directory; released by :meth:`release` or at exit.

    :param state_dir: the directory locked.
    :param path: the lock file.
    :param fd: the open, locked file.
    """

    state_dir: str
    path: str
    fd: int | None

    @classmethod
    def acquire(cls, state_dir: str) -> StateLock:
        """Create ``state_dir`` if needed and lock it, writing this process's PID.

        :raises StateDirectoryInUseError: if another process holds it.
        :raises OSError: if the directory or the file cannot be made.
        """
        os.makedirs(state_dir, exist_ok=True)
        path = os.path.join(state_dir, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirectoryInUseError(state_dir, pid) from None
        lock = cls(state_dir, path, fd)
        lock.write_pid()
        return lock

    def write_pid(self) -> None:
        """Write this process's PID into the lock file (again after twistd forks to a daemon)."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Unlock and close; the file stays, the next owner overwrites it."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
