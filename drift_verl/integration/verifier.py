"""Verifier calls in worker processes, with a hard wall-clock kill and a memory cap per call.

Model output is untrusted input. A verifier that parses ``\\boxed{9^{9^{9}}}`` or a 100 000-digit literal can
sit in C code holding the GIL for minutes and take gigabytes; a thread cannot be stopped, so the caller would
never get control back. Here each call runs in one of a few persistent worker processes (``python -m
drift_verl.integration.verifier``; its address space capped with ``RLIMIT_AS``): past the deadline the worker is killed and
replaced, a worker that crashed or ran out of memory is replaced, and the call raises :class:`VerifierFailed`
(the feedback loop scores it 0 and counts it). Workers load each verifier once and keep it, so a healthy call
costs one round trip through a pipe.

This is the one module for verifier time limits: the feedback agent loop (training, validation and
``drift_verl.eval.evaluate``) calls its verifier through :func:`shared_pool`, and the reward functions in ``reward_fns/``
bound their own slow parts with :func:`isolated` (run inline when already inside a worker), so verl's reward
loop, which calls them directly, gets the same bound.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from drift_verl.core.config import EnvConfig
from drift_verl.core.errors import ClearError

IN_WORKER_ENV = "DRIFT_VERIFIER_WORKER"
LOAD_TIMEOUT_S = 300.0  # a worker's start and the verifier's import, before (not within) a call's deadline
_HEADER = struct.Struct(">I")


class VerifierFailed(Exception):
    """The call did not return a value: it timed out, ran out of memory, raised, or its worker died."""


class VerifierLoadError(ClearError):
    """The verifier cannot be loaded in a worker: every call would fail, so the job must stop, not score 0."""


def pkg_module(path: str) -> str | None:
    """The module a ``pkg://`` verifier path names (``pkg://package.module``, or with ``/`` as verl also reads it);
    None for a file path."""
    return path.removeprefix("pkg://").replace("/", ".") if path.startswith("pkg://") else None


def load_function(path: str, name: str):
    """verl's ``custom_reward_function`` convention: ``pkg://package.module`` or a ``.py`` file path.

    verl's own loader (``verl.utils.import_utils.load_extern_object``) cannot serve here: importing it imports
    torch, Ray and transformers (about 1 GB of address space), more than a worker's ``RLIMIT_AS`` cap leaves.
    ``tests/integration/test_verifier_load.py`` checks that this one finds what verl's finds and fails as it fails."""
    module_name = pkg_module(path)
    if module_name is not None:
        module = importlib.import_module(module_name)
    else:
        path = path.removeprefix("file://")
        spec = importlib.util.spec_from_file_location(f"drift_verifier_{abs(hash(path))}", path)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"verifier file not found: {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return getattr(module, name)


# ---------------------------------------------------------------------------------------------- framing
def _send(stream, message) -> None:
    data = pickle.dumps(message)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the verifier worker exited")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float | None = None):
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exactly(fd, size, deadline))


# ---------------------------------------------------------------------------------------------- parent side
class _Worker:
    def __init__(self, memory_mb: int):
        env = dict(os.environ, **{IN_WORKER_ENV: "1"})
        self.process = subprocess.Popen([sys.executable, "-m", "drift_verl.integration.verifier", str(memory_mb)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.loaded: set[tuple[str, str]] = set()

    def call(self, request: tuple, timeout_s: float):
        _send(self.process.stdin, request)
        return _receive(self.process.stdout.fileno(), time.monotonic() + timeout_s)

    def load(self, path: str, name: str) -> None:
        """Import the verifier in this worker (its start-up included) before any call's deadline runs."""
        if (path, name) in self.loaded:
            return
        try:
            status, message = self.call(("load", path, name), LOAD_TIMEOUT_S)
        except (TimeoutError, EOFError, OSError) as error:
            status, message = "load_error", f"the worker did not start or load it ({type(error).__name__})"
        if status != "ok":
            raise VerifierLoadError(f"verifier {path} (function {name!r}) does not load in a verifier worker "
                                    f"(memory cap drift.env.verifier_memory_mb): {message}")
        self.loaded.add((path, name))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


class VerifierPool:
    """``size`` worker processes (started on first use), each capped at ``memory_mb`` of address space.
    ``executor`` has one thread per worker: async callers wait there, never in the event loop's default executor
    (verl's agent loop tokenises on that one)."""

    def __init__(self, size: int = EnvConfig.verifier_workers, memory_mb: int = EnvConfig.verifier_memory_mb):
        if size < 1 or memory_mb < 64:
            raise ValueError(f"verifier pool: need >= 1 worker and >= 64 MB, got {size} and {memory_mb}")
        self.memory_mb = memory_mb
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="drift-verifier")
        self._idle: queue.Queue = queue.Queue()
        for _ in range(size):
            self._idle.put(None)  # a slot; its worker starts when first needed
        self.replaced = 0

    def call(self, path: str, name: str, args: tuple, kwargs: dict, timeout_s: float):
        """``load_function(path, name)(*args, **kwargs)`` in a worker, or :class:`VerifierFailed`
        (:class:`VerifierLoadError` when the verifier cannot be loaded at all)."""
        worker, status = self._idle.get(), "died"
        try:
            worker = worker or _Worker(self.memory_mb)
            worker.load(path, name)
            status, value = worker.call(("call", path, name, args, kwargs), timeout_s)
        except TimeoutError:
            status, value = "timeout", f"timed out after {timeout_s} s (its worker was killed)"
        except (EOFError, OSError) as error:  # killed by the OS, or crashed
            value = f"its worker died ({error})"
        except VerifierLoadError:
            raise
        except Exception as error:  # e.g. arguments or a reply that do not pickle
            value = f"{type(error).__name__}: {error}"
        finally:
            if status not in ("ok", "error") and worker is not None:  # a worker exits after a MemoryError too
                worker.kill()
                worker, self.replaced = None, self.replaced + 1
            self._idle.put(worker)
        if status == "memory":
            raise VerifierFailed(f"ran out of its {self.memory_mb} MB memory cap")
        if status != "ok":
            raise VerifierFailed(value)
        return value

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            if worker is not None:
                worker.kill()


_POOLS: dict[tuple[int, int], VerifierPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(size: int = EnvConfig.verifier_workers, memory_mb: int = EnvConfig.verifier_memory_mb) -> VerifierPool:
    """One pool per process and setting: the agent loops of one worker process share their verifier workers."""
    with _POOLS_LOCK:
        return _POOLS.setdefault((size, memory_mb), VerifierPool(size, memory_mb))


def isolated(fn, timeout_s: float, *args, memory_mb: int = EnvConfig.verifier_memory_mb):
    """``fn(*args)`` (a module-level function) bounded in time and memory: inline inside a verifier worker
    (already bounded), else in the shared pool. Raises :class:`VerifierFailed`."""
    if os.environ.get(IN_WORKER_ENV):
        return fn(*args)
    return shared_pool(memory_mb=memory_mb).call(_where(fn), fn.__name__, args, {}, timeout_s)


def _where(fn) -> str:
    """How a worker finds ``fn``'s module: by name when it is importable from ``sys.path``, else by its file (a
    module loaded from a path, as verl loads a ``custom_reward_function`` file)."""
    name = fn.__module__
    if importlib.machinery.PathFinder.find_spec(name.split(".")[0]) is not None:
        return f"pkg://{name}"
    return fn.__code__.co_filename


# ---------------------------------------------------------------------------------------------- worker side
def _serve(memory_mb: int) -> None:
    import resource

    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    # requests come on stdin, replies go on a private copy of stdout; what a verifier prints goes to stderr
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    functions: dict = {}
    while True:
        try:
            kind, path, name, *call = _receive(0)
        except EOFError:
            return
        try:
            if (path, name) not in functions:
                functions[path, name] = load_function(path, name)
            if kind == "load":
                reply = ("ok", None)
            else:
                fn, (args, kwargs) = functions[path, name], call
                value = asyncio.run(fn(*args, **kwargs)) if inspect.iscoroutinefunction(fn) else fn(*args, **kwargs)
                reply = ("ok", value)
            data = pickle.dumps(reply)
        except MemoryError:
            reply = ("memory", "out of memory under the cap")
            data = pickle.dumps(reply)
        except BaseException as error:  # any failure of the verifier (or of its reply's pickling) is counted
            reply = ("load_error" if kind == "load" else "error", f"{type(error).__name__}: {error}"[:2000])
            data = pickle.dumps(reply)
        replies.write(_HEADER.pack(len(data)) + data)
        replies.flush()
        if reply[0] == "memory":
            return

if __name__ == "__main__":
    _serve(int(sys.argv[1]))
