"""Run functions in persistent worker processes with a hard deadline per call: a worker that overruns is killed.

Signals (math-verify's own timeout) only work in a process's main thread and cannot interrupt long C calls; killing a
separate process works from any thread and always ends. Workers are plain `python -c` subprocesses talking pickle over
their stdin/stdout, so they start the same way from any thread, inside daemonic processes, and never re-import the
caller's `__main__` script (as multiprocessing's spawn and forkserver modes do).
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_readable
from pathlib import Path
from typing import Any, Hashable, NamedTuple

_HEADER = struct.Struct("!Q")
_WORKER_CMD = "from reasontrain.grading.timeouts import worker_main; worker_main()"


class Outcome(NamedTuple):
    status: str  # ok | error | timeout | died
    value: Any = None


class WorkerStartError(RuntimeError):
    pass


def _write_frame(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("worker pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> Any:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, size))


# ----------------------------------------------------------------------------------------------- worker side


def _exit_when_orphaned(parent_pid: int) -> None:
    # A worker busy in a long computation never sees its stdin close; this thread notices the parent is gone.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _resolve(name: str) -> Callable:
    """"package.module:function" -> the function; lets callers name a task without importing its module."""
    import importlib

    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def worker_main() -> None:
    """Entry point of a worker process: `python -c ... <modules to import, comma separated> <memory limit MiB>
    <warm-up function or "">`."""
    import importlib
    import signal

    preload = [m for m in sys.argv[1].split(",") if m] if len(sys.argv) > 1 else []
    memory_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    warmup = sys.argv[3] if len(sys.argv) > 3 else ""
    # The protocol owns the real stdout; anything a library prints goes to stderr instead of corrupting a frame.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    in_fd = 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    if memory_mb > 0:
        try:
            import resource

            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass
    for module in preload:
        importlib.import_module(module)
    if warmup:
        _resolve(warmup)()
    _write_frame(out_fd, ("ready", os.getpid()))
    while True:
        try:
            fn, args = _read_frame(in_fd)
        except EOFError:
            return
        except Exception as e:  # noqa: BLE001 - e.g. a task function the worker cannot import
            _write_frame(out_fd, ("error", type(e).__name__))
            continue
        try:
            if isinstance(fn, str):
                fn = _resolve(fn)
            result = Outcome("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - MemoryError and RecursionError included: report, keep serving
            # Only the type: printing a sympy exception can itself run for a very long time.
            result = Outcome("error", type(e).__name__)
        _write_frame(out_fd, tuple(result))


# ----------------------------------------------------------------------------------------------- parent side


class _Worker:
    def __init__(self, preload: Sequence[str], memory_limit_mb: int, warmup: str):
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CMD, ",".join(preload), str(memory_limit_mb), warmup],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True, env=env)
        self.started = time.monotonic()
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0
        self.group: Hashable = None  # affinity key of the tasks it has been given (see _TaskQueue)

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: Any) -> None:
        _write_frame(self.proc.stdin.fileno(), message)

    def recv(self) -> Any:
        return _read_frame(self.proc.stdout.fileno())

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _TaskQueue:
    """Task indices grouped by an affinity key. A worker keeps taking tasks of one group, so what it has cached for
    that key (math-verify's parse of a gold answer shared by many samples) stays useful; when its group runs out it
    claims a group nobody has started, and only at the end helps with the largest group left."""

    def __init__(self, n: int, keys: Sequence[Hashable] | None):
        self.groups: dict[Hashable, deque[int]] = {}
        for i in range(n):
            self.groups.setdefault(keys[i] if keys is not None else None, deque()).append(i)
        self.unclaimed = deque(self.groups)
        self.left = n

    def __bool__(self) -> bool:
        return self.left > 0

    def take(self, w: _Worker) -> int:
        if not self.groups.get(w.group):
            while self.unclaimed and not self.groups.get(self.unclaimed[0]):
                self.unclaimed.popleft()
            w.group = (self.unclaimed.popleft() if self.unclaimed
                       else max(self.groups, key=lambda k: len(self.groups[k])))
        group = self.groups[w.group]
        i = group.popleft()
        if not group:
            del self.groups[w.group]
        self.left -= 1
        return i

    def put_back(self, i: int, key: Hashable) -> None:
        self.groups.setdefault(key, deque()).appendleft(i)
        self.unclaimed.appendleft(key)
        self.left += 1


class WorkerPool:
    """Persistent worker processes shared by all threads; each `map` call borrows workers exclusively.

    `preload` modules are imported and the `warmup` function ("module:function") is run once per worker before it
    reports ready, so per-call latency excludes imports and one-time set-up.
    A call's deadline starts when it is handed to a ready worker. `memory_limit_mb` caps each worker's address space,
    so a runaway computation fails with MemoryError instead of swapping the machine.
    """

    def __init__(self, preload: Sequence[str] = (), warmup: str = "", max_idle: int = 8,
                 memory_limit_mb: int = 4096, start_timeout: float = 120.0):
        self.preload = tuple(preload)
        self.warmup = warmup
        self.max_idle = max_idle
        self.memory_limit_mb = memory_limit_mb
        self.start_timeout = start_timeout
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()  # a forked child must not use (or kill) its parent's workers

    def _new_worker(self) -> _Worker:
        return _Worker(self.preload, self.memory_limit_mb, self.warmup)

    def _checkout(self, n: int) -> list[_Worker]:
        with self._lock:
            crew = []
            while self._idle and len(crew) < n:
                w = self._idle.pop()
                if w.alive():
                    crew.append(w)
                else:
                    w.kill()
        return crew + [self._new_worker() for _ in range(n - len(crew))]

    def _checkin(self, crew: list[_Worker]) -> None:
        extra = []
        with self._lock:
            for w in crew:
                # A worker still holding a task would answer it later, mismatched with the next caller's task.
                if w.task is None and w.alive() and len(self._idle) < self.max_idle:
                    self._idle.append(w)
                else:
                    extra.append(w)
        for w in extra:
            w.kill()

    def close(self) -> None:
        """Kill the idle workers (those borrowed by a running `map` are killed when it returns them)."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()

    def map(self, fn: Callable, args_list: Sequence[tuple], *, timeout: float, workers: int = 1,
            on_done: Callable[[int, Outcome], None] | None = None,
            affinity: Sequence[Hashable] | None = None, deadline: float | None = None) -> list[Outcome]:
        """`fn(*args)` for each args tuple, in up to `workers` processes, at most `timeout` seconds each, in order.

        `fn` is a function of an importable module, or its name as "package.module:function" (then the caller need
        not import it). Each result is an `Outcome`: ("ok", value), ("error", exception type name), ("timeout",)
        when the call overran and its worker was killed, or ("died",) when its worker exited while running it.
        `on_done(i, outcome)` is called as each finishes. Tasks with equal `affinity` keys go to the same worker
        where possible, to reuse its caches. `deadline` (a `time.monotonic()` time) ends the whole call: calls still
        running then are killed and those not started are given up, all with ("timeout",).
        """
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        results: list[Outcome | None] = [None] * len(args_list)
        if not args_list:
            return []
        todo = _TaskQueue(len(args_list), affinity)
        crew = self._checkout(max(1, min(workers, len(args_list))))

        def finish(w: _Worker, outcome: Outcome) -> None:
            i, w.task = w.task, None
            results[i] = outcome
            if on_done is not None:
                on_done(i, outcome)

        def replace(w: _Worker) -> None:
            w.kill()
            crew[crew.index(w)] = self._new_worker()

        end = float("inf") if deadline is None else deadline
        try:
            while todo or any(w.task is not None for w in crew):
                now = time.monotonic()
                if now >= end:
                    self._give_up(crew, todo, finish, replace)
                    break
                for w in list(crew):
                    if w.ready and w.task is None and todo:
                        w.task, w.deadline = todo.take(w), min(now + timeout, end)
                        try:
                            w.send((fn, args_list[w.task]))
                        except OSError:  # it died while idle: the task never ran, so it waits for the replacement
                            todo.put_back(w.task, w.group)
                            w.task = None
                            replace(w)
                waiting = [w for w in crew if not w.ready or w.task is not None]
                next_due = min([end] + [w.deadline if w.task is not None else w.started + self.start_timeout
                                        for w in waiting])
                for w in wait_readable(waiting, timeout=max(0.0, next_due - time.monotonic())):
                    try:
                        message = w.recv()
                    except (EOFError, OSError, pickle.UnpicklingError):
                        if not w.ready:
                            code = w.proc.poll()
                            raise WorkerStartError(f"grading worker exited during startup (exit code {code}); "
                                                   "see its stderr above") from None
                        finish(w, Outcome("died"))
                        replace(w)
                        continue
                    if not w.ready:
                        w.ready = True
                    else:
                        finish(w, Outcome(*message))
                now = time.monotonic()
                for w in list(crew):
                    if w.task is not None and now >= w.deadline:
                        finish(w, Outcome("timeout"))
                        replace(w)
                    elif not w.ready and now >= w.started + self.start_timeout:
                        w.kill()
                        raise WorkerStartError(f"grading worker not ready after {self.start_timeout:.0f} s")
        finally:
            self._checkin(crew)
        return results  # type: ignore[return-value]

    @staticmethod
    def _give_up(crew: list[_Worker], todo: _TaskQueue, finish: Callable, replace: Callable) -> None:
        """The call's deadline passed: running calls are killed, the rest never start; all count as timed out."""
        for w in list(crew):
            if w.task is not None:
                finish(w, Outcome("timeout"))
                replace(w)
        while todo:
            w = crew[0]
            w.task = todo.take(w)
            finish(w, Outcome("timeout"))


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def symbolic_pool() -> WorkerPool:
    """The process-wide pool whose workers have math-verify imported."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._pid != os.getpid():
            _POOL = WorkerPool(preload=("reasontrain.grading.equivalence",),
                               warmup="reasontrain.grading.equivalence:warm_up")
            atexit.register(_POOL.close)
        return _POOL


def shutdown() -> None:
    """Kill the idle grading workers now (they are also killed at interpreter exit)."""
    if _POOL is not None:
        _POOL.close()
