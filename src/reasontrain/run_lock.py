"""One writer per run folder: a second process on a folder in use stops at once, naming the holder.

The lock is `flock` on `<folder>/.lock`: the kernel drops it when the holding process ends, however it ends
(SIGKILL included), so a crashed run never leaves a stale lock behind. The file records the holder's PID and host
for the message only; the lock itself is never judged by its content.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = ".lock"


class RunFolderInUse(RuntimeError):
    pass


@contextlib.contextmanager
def exclusive_folder(folder: Path):
    """Hold the lock of `folder` (created if needed) for the duration; RunFolderInUse if another process has it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
        os.close(fd)
        raise RunFolderInUse(f"{folder} is in use by another run ({holder}); wait for it to end, or choose another "
                             "run_name / output_root") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def exclusive_folders(*folders: Path):
    """Hold the locks of several folders (each distinct folder once)."""
    with contextlib.ExitStack() as stack:
        seen = set()
        for folder in folders:
            resolved = Path(folder).resolve()
            if resolved not in seen:
                seen.add(resolved)
                stack.enter_context(exclusive_folder(resolved))
        yield
