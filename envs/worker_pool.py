"""A small pool of reusable sympy worker processes with a hard timeout per comparison.

sympy's ``simplify`` can run for minutes on some inputs and cannot be interrupted from
another thread, and ``signal.alarm`` only works on the main thread. Each comparison
therefore runs in a child process (``python -m envs._worker``) that is killed when its
answer is late. The children are plain subprocesses, not ``multiprocessing`` ones, so the
pool also works inside daemonic worker processes such as PyTorch ``DataLoader`` workers.
All methods are thread-safe; after a ``fork`` the child process starts its own workers.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ComparisonOutcome", "WorkerPool", "get_pool", "shutdown_workers"]

logger = logging.getLogger(__name__)

# Seconds a new worker may take to import sympy; not counted against a check's timeout.
STARTUP_TIMEOUT = 120.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class ComparisonOutcome:
    """Result of one comparison in a worker: ``reason`` is set when it could not finish."""

    correct: bool
    reason: str | None = None


class _Worker:
    def __init__(self) -> None:
        environment = dict(os.environ)
        python_path = environment.get("PYTHONPATH", "")
        environment["PYTHONPATH"] = _PACKAGE_ROOT + (
            os.pathsep + python_path if python_path else ""
        )
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "envs._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=environment,
        )
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.next_id = 0
        reader = threading.Thread(target=self._read_replies, daemon=True)
        reader.start()
        try:
            ready = self.replies.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            ready = None
        if not ready or not ready.get("ready"):
            self.kill()
            raise RuntimeError(
                f"checker worker failed to start within {STARTUP_TIMEOUT:.0f} s "
                f"(exit code {self.process.poll()})"
            )

    def _read_replies(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            try:
                self.replies.put(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("checker worker wrote a line that is not JSON: %.200r", line)
        self.replies.put(None)  # end of output: the worker exited

    def compare(self, left: Any, right: Any, inexact: bool, timeout: float) -> ComparisonOutcome:
        self.next_id += 1
        request = {"id": self.next_id, "left": left, "right": right, "inexact": inexact}
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self.replies.get(timeout=timeout)  # raises queue.Empty on timeout
        if reply is None or reply.get("id") != self.next_id:
            raise BrokenPipeError("checker worker exited or answered out of order")
        return ComparisonOutcome(bool(reply["correct"]), reply.get("reason"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("checker worker %d did not exit after kill", self.process.pid)

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class WorkerPool:
    """Reusable sympy workers; at most ``max_workers`` comparisons run at once."""

    def __init__(self, max_workers: int = 2) -> None:
        if max_workers < 1:
            raise ValueError(f"expected max_workers >= 1, got {max_workers}")
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_workers)
        self._idle: list[_Worker] = []
        self._owner_pid = os.getpid()

    def _adopt_after_fork(self) -> None:
        """Forget the parent's workers and slot counts when running in a forked child."""
        with self._lock:
            if self._owner_pid != os.getpid():
                # The idle workers belong to the parent process; leave them alone.
                self._idle = []
                self._slots = threading.BoundedSemaphore(self.max_workers)
                self._owner_pid = os.getpid()

    def _take_idle(self) -> _Worker | None:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
        return None

    def compare(self, left: Any, right: Any, inexact: bool, timeout: float) -> ComparisonOutcome:
        """Compare two trees in a worker; timeouts and worker failures return a reason, not an error."""
        self._adopt_after_fork()
        slots = self._slots
        if not slots.acquire(timeout=timeout):
            return ComparisonOutcome(
                False, f"timed out after {timeout:g} s waiting for a checker worker"
            )
        try:
            worker = self._take_idle()
            if worker is None:
                try:
                    worker = _Worker()
                except (OSError, RuntimeError) as error:
                    logger.error("could not start a checker worker: %s", error)
                    return ComparisonOutcome(False, f"checker worker unavailable: {error}")
            try:
                outcome = worker.compare(left, right, inexact, timeout)
            except queue.Empty:
                worker.kill()
                self._replace_in_background()
                return ComparisonOutcome(False, f"timed out after {timeout:g} s")
            except (OSError, ValueError) as error:
                logger.warning("checker worker %d failed: %s", worker.process.pid, error)
                worker.kill()
                return ComparisonOutcome(False, f"checker worker failed: {error}")
            with self._lock:
                if self._owner_pid == os.getpid():
                    self._idle.append(worker)
            return outcome
        finally:
            slots.release()

    def _replace_in_background(self) -> None:
        """Start a replacement worker in a thread, so the next check does not wait for it."""

        def start() -> None:
            try:
                worker = _Worker()
            except (OSError, RuntimeError) as error:
                logger.warning("could not start a replacement checker worker: %s", error)
                return
            with self._lock:
                if self._owner_pid == os.getpid() and len(self._idle) < self.max_workers:
                    self._idle.append(worker)
                    return
            worker.close()

        threading.Thread(target=start, daemon=True).start()

    def shutdown(self) -> None:
        """Stop all idle workers; running comparisons finish with their own worker."""
        with self._lock:
            idle, self._idle = self._idle, []
            owned = self._owner_pid == os.getpid()
        if owned:
            for worker in idle:
                worker.close()


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def get_pool() -> WorkerPool:
    """Return the process-wide pool, created on first use with up to 2 workers."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(max_workers=max(1, min(2, os.cpu_count() or 1)))
        return _pool


def shutdown_workers() -> None:
    """Stop the idle sympy workers of this process (they restart on the next check)."""
    with _pool_lock:
        pool = _pool
    if pool is not None:
        pool.shutdown()


atexit.register(shutdown_workers)
