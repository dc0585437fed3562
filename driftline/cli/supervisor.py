"""Long-lived helpers of the local stack: the worker's restart loop and the owner watchdog.

``python -m driftline.cli.supervisor worker --state-dir D -- prefect worker start ...``
    Runs the Prefect worker and starts it again, with capped exponential backoff, whenever it exits
    non-zero (the process worker exits about a minute after the server goes away, or is killed) while
    the stack is meant to be up. The supervisor is the leader of the stack's ``worker`` process group,
    which the worker shares (Prefect starts each flow run in a session of its own; ``down`` finds those
    by the stack's environment marker), and the worker gets a parent-death SIGTERM, so it never outlives
    a killed supervisor. SIGTERM (or SIGINT) to the supervisor's pid
    stops it cleanly: it sends exactly one SIGTERM to its group (a second one makes Prefect's worker
    SIGKILL itself), waits for the worker, and exits 0. SIGUSR1 skips the current backoff. The current
    worker's pid is kept in ``D/pids/worker-process.json`` (``--record`` names another file, one per worker
    when the stack runs several).

``python -m driftline.cli.supervisor watch-owner --state-dir D --owner-pid P``
    Waits for process P (the stack's owner, e.g. a pytest process; ``DRIFTLINE_STACK_OWNER_PID``) to
    exit, then stops the whole stack of state dir D as ``driftline down`` does. ``driftline up`` is a
    short-lived CLI, so a parent-death signal cannot tie the stack to it; the watchdog is started
    detached instead and holds a pidfd on the owner, which cannot be fooled by a recycled pid.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
RESTART_BASE_SECONDS = 1.0
RESTART_CAP_SECONDS = 30.0
STABLE_AFTER_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0
WORKER_PROCESS_FILE = "worker-process.json"
# The periodic half of abandoned-run recovery (`driftline up` does the rest): while the worker runs, a
# PENDING or CANCELLING run silent for 10 minutes is crashed so it frees its concurrency slot.
RECOVERY_EVERY_SECONDS = 300.0

_libc: ctypes.CDLL | None = None


# ---------------------------------------------------------------------------------------------- pure rules
@dataclass(frozen=True)
class RestartDecision:
    """What the supervisor does after the worker exited."""

    restart: bool
    delay: float
    failures: int
    reason: str


def restart_decision(
    exit_code: int,
    uptime: float,
    failures: int,
    stopping: bool,
    *,
    base: float = RESTART_BASE_SECONDS,
    cap: float = RESTART_CAP_SECONDS,
    stable_after: float = STABLE_AFTER_SECONDS,
) -> RestartDecision:
    """Whether and when to start the worker again after it exited.

    Args:
        exit_code: the worker's exit status (negative: killed by that signal).
        uptime: seconds the worker ran before it exited.
        failures: consecutive failed runs before this one.
        stopping: the supervisor was told to stop.
        base: delay after the first failure; it doubles with each further one.
        cap: longest delay.
        stable_after: a worker that ran this long resets the failure count.

    Returns:
        The decision, with the failure count to carry to the next exit.
    """
    if stopping:
        return RestartDecision(False, 0.0, failures, "supervisor stopping")
    if exit_code == 0:
        return RestartDecision(False, 0.0, 0, "worker exited cleanly")
    failures = 1 if uptime >= stable_after else failures + 1
    delay = min(cap, base * 2 ** (failures - 1))
    return RestartDecision(True, delay, failures, f"worker exited with code {exit_code} after {uptime:.0f} s")


# ---------------------------------------------------------------------------------------------- processes
def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when the process that forks it dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); None elsewhere. libc is loaded here, before the fork, so the
    child only makes the system call. If the parent died between fork and prctl, the child signals itself.
    """
    libc = _load_libc()
    if libc is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _say(message: str) -> None:
    print(f"--- driftline supervisor [{time.strftime('%Y-%m-%dT%H:%M:%S')}]: {message}", flush=True)


class WorkerSupervisor:
    """Runs ``command`` and restarts it per :func:`restart_decision` until told to stop."""

    def __init__(self, command: list[str], state_dir: Path, record: str = WORKER_PROCESS_FILE) -> None:
        self.command = command
        self.record = state_dir / "pids" / record
        self.stopping = False
        self.wake = False
        self.process: subprocess.Popen | None = None

    def _on_stop(self, signum: int, _frame: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _say(f"received {signal.Signals(signum).name}; stopping the worker")
        if os.getpgid(0) == os.getpid():
            # The worker and its flow runs share our group: one SIGTERM each (we ignore ours).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpid(), signal.SIGTERM)
        elif self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def _on_wake(self, _signum: int, _frame: object) -> None:
        self.wake = True

    def _spawn(self) -> subprocess.Popen:
        process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, preexec_fn=parent_death_signal())
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps({"pid": process.pid, "start_time": _start_time(process.pid)}))
        return process

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        self.wake = False
        while not self.stopping and not self.wake and time.monotonic() < deadline:
            time.sleep(0.2)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_wake)
        failures = 0
        restarts = 0
        try:
            while not self.stopping:
                started = time.monotonic()
                self.process = self._spawn()
                _say(f"worker started (pid {self.process.pid}, restarts so far {restarts})")
                code = self._wait(self.process)
                decision = restart_decision(code, time.monotonic() - started, failures, self.stopping)
                failures = decision.failures
                if not decision.restart:
                    _say(f"{decision.reason}; not restarting")
                    return 0 if self.stopping else code
                _say(f"{decision.reason}; restarting in {decision.delay:.0f} s")
                restarts += 1
                self._sleep(decision.delay)
            return 0
        finally:
            self.record.unlink(missing_ok=True)

    def _wait(self, process: subprocess.Popen) -> int:
        stop_deadline: float | None = None
        next_check = time.monotonic() + RECOVERY_EVERY_SECONDS
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return process.wait(timeout=0.2)
            if not self.stopping and time.monotonic() >= next_check:
                next_check = time.monotonic() + RECOVERY_EVERY_SECONDS
                _recover_silent_runs()
            if self.stopping:
                stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE_SECONDS
                if time.monotonic() > stop_deadline:
                    _say(f"worker still running {STOP_GRACE_SECONDS:.0f} s after SIGTERM; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()


def _recover_silent_runs() -> None:
    """Crash runs nothing runs any more (see ``stack.is_abandoned``); a failure is logged, never fatal."""
    from driftline.cli.stack import recover_abandoned_runs

    api_url, pool = os.environ.get("PREFECT_API_URL"), os.environ.get("DRIFTLINE_WORK_POOL")
    if not api_url or not pool:
        return
    try:
        report = recover_abandoned_runs(api_url, pool, worker_alive=True)
    except Exception as error:  # the server may be away for a while: the next check tries again
        _say(f"abandoned-run check skipped: {error}")
        return
    if report.crashed:
        _say(f"periodic check: {len(report.crashed)} abandoned flow run(s) marked CRASHED")


def watch_owner(owner_pid: int, on_exit: Callable[[], None], poll_seconds: float = 1.0) -> None:
    """Block until ``owner_pid`` has exited, then call ``on_exit`` (at once if it is already gone)."""
    try:
        fd = os.pidfd_open(owner_pid)
    except ProcessLookupError:
        on_exit()
        return
    except (AttributeError, OSError):  # no pidfd (old kernel or not Linux): poll the pid
        while True:
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(poll_seconds)
        on_exit()
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(int(poll_seconds * 1000)):
            pass
    finally:
        os.close(fd)
    on_exit()


def _stop_stack(state_dir: Path) -> None:
    from driftline.cli.stack import LocalStack
    from driftline.settings import Settings

    settings = Settings(state_dir=state_dir)
    outcome = LocalStack(settings).down()
    _say("owner exited; stack stopped: " + ", ".join(f"{part} {result}" for part, result in outcome.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftline.cli.supervisor", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a worker command and restart it when it fails")
    worker.add_argument("--state-dir", type=Path, required=True)
    worker.add_argument(
        "--record", default=WORKER_PROCESS_FILE, help="file under <state-dir>/pids/ naming the current worker pid"
    )
    worker.add_argument("worker_command", nargs=argparse.REMAINDER, help="-- then the command to supervise")
    owner = commands.add_parser("watch-owner", help="stop the stack when the owner process exits")
    owner.add_argument("--state-dir", type=Path, required=True)
    owner.add_argument("--owner-pid", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "worker":
        command = args.worker_command[1:] if args.worker_command[:1] == ["--"] else args.worker_command
        if not command:
            parser.error("worker: no command after --")
        if "/" in args.record or not args.record.endswith(".json"):
            parser.error(f"worker: --record {args.record!r} must be a file name ending in .json")
        return WorkerSupervisor(command, args.state_dir, args.record).run()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _say(f"watching owner pid {args.owner_pid}")
    watch_owner(args.owner_pid, lambda: _stop_stack(args.state_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
