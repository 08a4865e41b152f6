"""End a job whose parts died or wedged, in bounded time, with one line that says what and where its log is.

verl waits on Ray, vLLM and TransferQueue without timeouts. When a vLLM engine dies (its worker crashed, or it
was killed), when a Ray actor's process dies, or when Ray cannot place a worker group, the run would wait
forever. :class:`JobMonitor` runs in the driver for the whole run and checks, every ``poll_s``:

- placement groups pending longer than ``startup_timeout_s`` (Ray lacks the resources asked for);
- actors of this job that died other than on purpose (Ray's actor table: crash, OOM kill, lost node);
- each vLLM rollout server's ``/health`` (vLLM answers 503 once its engine is dead; a server that answers
  nothing for ``engine_unresponsive_s`` counts as wedged).

On a failure it interrupts the driver's main thread, which stops Ray and ends with the line; if that has not
ended the process after ``grace_s``, the monitor prints the line and exits. Waits that stall without anything
dying (a weight sync, a rollout that never finishes) are bounded where the DRIFT trainer waits (:mod:`drift_verl.integration.training.rollout_io`,
:mod:`drift_verl.integration.training.rollout_io`; :class:`Stalled`).
"""

from __future__ import annotations

import _thread
import glob
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request

from drift_verl.core.config import HealthConfig
from drift_verl.core.errors import ClearError
from drift_verl.integration.job import console

PREFIX = "drift-verl: job failed: "
_ROLLOUT_SERVER = re.compile(r"^vllm_server_\d+_\d+")
# ended on purpose, or as a consequence of another death that is reported itself (its owner's)
_NOT_A_CAUSE = {"RAY_KILL", "OUT_OF_SCOPE", "REF_DELETED", "OWNER_DIED"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the servers are ours, never behind one


class Stalled(ClearError, TimeoutError):
    """A wait inside the trainer that exceeded its ``drift.health`` bound; the message names the wait."""


def _logs_dir() -> str | None:
    try:
        import ray._private.worker as ray_worker

        return ray_worker._global_node.get_logs_dir_path()
    except Exception:  # not the node's driver (a remote cluster): no local log folder to point at
        return None


def worker_log(pid: int) -> str:
    """The Ray log file of the worker process ``pid`` (an actor's stderr, which also holds what its child
    processes, e.g. a vLLM engine, wrote), or the session's log folder when it is not on this machine."""
    logs = _logs_dir()
    if logs is None:
        return "the Ray session's logs folder (logs/ under the session dir, e.g. /tmp/ray/session_latest)"
    found = sorted(glob.glob(os.path.join(logs, f"worker-*-{pid}.err")))
    return found[0] if found else logs


def death_reason(cause) -> str | None:
    """Why an actor died, from Ray's ActorDeathCause; None when it was ended on purpose or died with its owner
    (the end of a run, or a consequence of the owner's own death)."""
    from ray.core.generated import common_pb2

    kind = cause.WhichOneof("context")
    if kind == "actor_died_error_context":
        context = cause.actor_died_error_context
        reason = common_pb2.ActorDiedErrorContext.Reason.Name(context.reason)
        if reason in _NOT_A_CAUSE:
            return None
        first = (context.error_message or "").strip().splitlines()
        return f"{reason.lower().replace('_', ' ')}" + (f" ({first[0][:200]})" if first else "")
    if kind == "oom_context":
        return "killed by Ray's memory monitor (out of memory)"
    if kind == "creation_task_failure_context":
        return "its constructor raised"
    if kind == "runtime_env_failed_context":
        return "its runtime environment could not be set up"
    if kind == "actor_unschedulable_context":
        return "it could not be scheduled"
    return None


def describe_dead_actor(info: dict) -> str | None:
    """One line for a dead actor (GCS actor-table entry), or None when it ended on purpose."""
    reason = death_reason(info["DeathCause"])
    if reason is None:
        return None
    name = info.get("Name") or info.get("ActorClassName")
    return f"Ray actor {name} (pid {info.get('Pid')}) died: {reason}; log: {worker_log(info.get('Pid'))}"


class JobMonitor:
    """``announce``: print the line as soon as a failure is found (when no ``drift_verl.main`` reports it)."""

    def __init__(self, config: HealthConfig, announce: bool = False):
        self.config = config
        self.announce = announce
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="drift-job-monitor", daemon=True)
        self._pending_since: dict = {}
        self._addresses: dict[str, str] = {}
        self._last_answer: dict[str, float] = {}

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    # ---------------------------------------------------------------- checks (each returns a line or None)
    def _pending_placement_groups(self, now: float) -> str | None:
        import ray

        stuck = []
        for pg_id, info in ray.util.placement_group_table().items():
            if info.get("state") != "PENDING":
                self._pending_since.pop(pg_id, None)
                continue
            if now - self._pending_since.setdefault(pg_id, now) > self.config.startup_timeout_s:
                stuck.append(list(info.get("bundles", {}).values()))
        if not stuck:
            return None
        return (
            f"Ray could not schedule {len(stuck)} placement group(s) within {self.config.startup_timeout_s:.0f} s: "
            f"asked for bundles {stuck}, the cluster has {ray.cluster_resources()}. Raise "
            "ray_kwargs.ray_init.num_cpus / num_gpus (logical counts are fine on one machine), or lower the workers "
            "asked for; raise drift.health.startup_timeout_s if the cluster is only slow."
        )

    def _actor_table(self, state: str | None = None) -> dict:
        import ray
        from ray._private import state as ray_state

        job = ray.JobID.from_hex(ray.get_runtime_context().get_job_id())
        return ray_state.actors(job_id=job, actor_state_name=state)

    def _dead_actors(self) -> str | None:
        return next(filter(None, map(describe_dead_actor, self._actor_table("DEAD").values())), None)

    def _server_address(self, name: str) -> str | None:
        import ray

        if name not in self._addresses:
            try:
                host, port = ray.get(ray.get_actor(name).get_server_address.remote(), timeout=10)
            except Exception:  # not launched yet (verl asserts), or being torn down
                return None
            self._addresses[name] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self._addresses[name]

    def _dead_engines(self, now: float) -> str | None:
        import ray

        for name in sorted(n for n in ray.util.list_named_actors() if _ROLLOUT_SERVER.match(n)):
            address = self._server_address(name)
            if address is None:
                continue
            try:
                with _NO_PROXY.open(f"http://{address}/health", timeout=10):
                    self._last_answer[name] = now
                continue
            except urllib.error.HTTPError as error:  # vLLM's answer: 503 once the engine is dead
                code = error.code
            except OSError:  # no answer: the server is busy, wedged or gone
                code = None
            if code == 503:
                status = "its /health answers 503"
            else:
                since = self._last_answer.setdefault(name, now)
                if now - since <= self.config.engine_unresponsive_s:
                    continue
                status = f"its /health has not answered for {now - since:.0f} s"  # other codes: no answer
            return f"the vLLM engine of rollout server {name} is dead ({status}); log: {self._server_log(name)}"
        return None

    def _server_log(self, name: str) -> str:
        for info in self._actor_table().values():
            if info.get("Name") == name:
                return worker_log(info.get("Pid"))
        return worker_log(-1)

    def check(self) -> str | None:
        """Run every check once; the first failure's line, or None."""
        import ray

        if not ray.is_initialized():
            return None
        now = time.monotonic()
        for check in (self._dead_actors, lambda: self._dead_engines(now), lambda: self._pending_placement_groups(now)):
            try:
                line = check()
            except Exception:  # the cluster is shutting down, or a check's own call failed: try again next poll
                continue
            if line:
                return line
        return None

    def diagnose(self, error: BaseException) -> str | None:
        """The line for a run that ended with ``error``: what the monitor found, a :class:`ClearError` (a stalled
        wait, a damaged store, ...) raised anywhere in the job, or (for another error raised by a Ray task or
        actor) a part of the job found dead now. None: no such failure; the error speaks for itself."""
        if self.error:
            return self.error
        cause = getattr(error, "cause", None) or error
        if isinstance(cause, ClearError):
            return str(cause)
        if type(error).__module__.startswith("ray.") or isinstance(error, KeyboardInterrupt):
            return self.check()
        return None

    def shut_down_ray(self) -> None:
        """Stop the cluster (and with it Ray's stream of worker logs, so the job's last line is the failure);
        if that does not return within ``grace_s``, the process exits anyway."""
        import ray

        timer = threading.Timer(self.config.grace_s, os._exit, args=(1,))
        timer.daemon = True
        timer.start()
        ray.shutdown()
        timer.cancel()

    def _watch(self) -> None:
        while not self._stop.wait(self.config.poll_s):
            line = self.check()
            if line is None or self._stop.is_set():  # the run ended while checking: what died, died with it
                continue
            self.error = line
            if self.announce:
                console.report_failure(PREFIX + line)
            interrupt_main_thread()  # the driver's main thread reports the line (drift_verl.main.JobFailed)
            time.sleep(self.config.grace_s)  # if it sits in a call that ignores the interrupt, end the process
            note = (f"the run did not stop within {self.config.grace_s:.0f} s (drift.health.grace_s), its main thread "
                    f"blocked in {main_thread_place()}: exiting")
            console.report_failure(PREFIX + with_note(line, note))  # the terminal, also with a quiet console
            os._exit(1)


def interrupt_main_thread() -> None:
    """KeyboardInterrupt in the main thread. A real SIGINT sent to that thread also wakes a blocking wait (a lock,
    a socket), which ``_thread.interrupt_main`` alone does not: it only sets a flag checked between bytecodes."""
    import signal

    if callable(signal.getsignal(signal.SIGINT)):  # Python's handler: the signal becomes KeyboardInterrupt
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    else:  # SIG_DFL would kill the process without its line; interrupt_main is a no-op under SIG_IGN
        _thread.interrupt_main()


def main_thread_place() -> str:
    """Where the main thread is now (file:line in function), innermost frame, for the exit note."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    if frame is None:
        return "an unknown place"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def with_note(line: str, note: str) -> str:
    """``line`` with ``note`` added before its ``log: <path>``, which stays the last field for whoever reads it."""
    head, sep, log = line.rpartition("; log: ")
    return f"{head} ({note}){sep}{log}" if sep else f"{line} ({note})"

def bounded(what: str, seconds: float, key: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or :class:`Stalled` naming ``what`` when it has not returned within ``seconds``
    (it runs in a helper thread, which is left behind: the job ends on the error)."""
    outcome: dict = {}
    done = threading.Event()

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=target, name=f"drift-bounded: {what}", daemon=True).start()
    if not done.wait(seconds):
        raise Stalled(f"{what} did not finish within {seconds:g} s (drift.health.{key})")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
