"""The console of ``python -m drift_verl.main``: verl's own, or a quiet one for the embedded task.

Why: a run of the embedded task printed ~1,500 lines (engine warnings, Ray's notices, TransferQueue, vLLM's
arguments, a validation line of hundreds of metrics), burying the few that matter. With a quiet console the
driver's file descriptors 1 and 2 go to ``<trainer.default_local_dir>/console.log`` (appended, one header per
attempt), so everything the driver and its children print, C-level output and what Ray relays from its workers
included, lands there; the terminal keeps the log's path, DRIFT's progress bars, one line per validation, the
``[drift]`` phase lines, the summary and, on a failure, its one clear line. ``drift.console``: ``auto`` (quiet
for the embedded tasks, ``task_name`` in :data:`EMBEDDED_TASKS`, trained by DRIFT's trainer; verl's console
otherwise), ``quiet``, ``full``. Set up by :mod:`drift_verl.main` only: ``python -m verl.trainer.main_ppo`` keeps
verl's console. What prints before the config is composed (verl's engine warnings when Hydra imports it) is held back
(:func:`held_until_chosen`) and goes where the chosen console puts the rest.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from omegaconf import OmegaConf

from drift_verl.integration.job import console, run_files

TRACEBACK_LINES = 15  # of an unexpected error, shown on the terminal (the whole traceback is in the log)
EMBEDDED_TASKS = ("tiny", "tiny_informative", "tiny_long")  # recipes/task: the tasks this project ships and builds


def console_mode(config) -> str:
    """``quiet`` or ``full`` for this job (an unknown ``drift.console`` gives ``full``: the config check names it)."""
    setting = OmegaConf.select(config, "drift.console", default="auto")
    if setting != "auto":
        return setting if setting in ("quiet", "full") else "full"
    embedded = OmegaConf.select(config, "task_name", default=None) in EMBEDDED_TASKS
    drift_trainer = OmegaConf.select(config, "trainer.v1.trainer_mode", default=None) == "drift"
    return "quiet" if embedded and drift_trainer else "full"


class _Held:
    """File descriptors 1 and 2 into temporary files until the console is chosen."""

    def __init__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        self.files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
        for fd, file in zip((1, 2), self.files):
            os.dup2(file.fileno(), fd)

    def end(self, into: int | None = None) -> None:
        """Write what was held into ``into`` (the log) or back where each stream was going; restore 1 and 2."""
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved, file in zip((1, 2), self.saved, self.files):
            file.seek(0)
            held = file.read()
            target = saved if into is None else into
            while held:
                held = held[os.write(target, held):]
            os.dup2(saved, fd)
            os.close(saved)
            file.close()


_held: _Held | None = None


@contextlib.contextmanager
def held_until_chosen():
    """For ``python -m drift_verl.main``'s ``__main__``: hold back what is printed until :func:`job_console` chooses
    the console (verl's import warnings go to the log of a quiet console); whatever ends the process before (a
    Hydra error, ``--help``, ``--cfg job``) gets its output back where it was going."""
    global _held
    _held = _Held()
    try:
        yield
    finally:
        _end_hold()


def _end_hold(into: int | None = None) -> None:
    global _held
    if _held is not None:
        held, _held = _held, None
        held.end(into)


@contextlib.contextmanager
def job_console(config):
    """The whole job's console (:func:`console_mode`); names the run folder first, in both modes."""
    folder = run_files.run_dir(config)
    metrics = run_files.place_metrics(config, folder)
    if console_mode(config) == "full":
        _end_hold()
        os.environ.pop(console.ENV, None)
        print(f"drift-verl: run folder: {folder}", flush=True)
        yield
        return
    with QuietConsole(folder, metrics):
        yield


class _RelayServer:
    """The driver's end of :mod:`drift_verl.integration.job.console`: writes what the job's processes send to the
    terminal, in the order each sent it."""

    def __init__(self, write):
        self.write = write
        self.token = secrets.token_hex(16)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}:{self.token}"
        self.readers: list[threading.Thread] = []
        self.last_data = time.monotonic()
        threading.Thread(target=self._accept, name="drift-console-relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            reader = threading.Thread(target=self._serve, args=(conn,), name="drift-console-reader", daemon=True)
            self.readers.append(reader)
            reader.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            if stream.readline(100).rstrip(b"\n") != self.token.encode():
                return
            while True:
                header = stream.read(5)
                if len(header) < 5:
                    return
                data = stream.read(int.from_bytes(header[1:], "big"))
                self.last_data = time.monotonic()
                self.write(header[:1], data.decode("utf-8", "replace"))

    def drain(self, timeout: float, idle: float | None = None) -> None:
        """Wait until every sender closed (a finished trainer closes its end), or with ``idle``, until nothing came
        for that long (a failed job's processes may never close theirs); at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(r.is_alive() for r in self.readers):
            if idle is not None and time.monotonic() - self.last_data > idle:
                return
            time.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class QuietConsole:
    """File descriptors 1 and 2 to ``<folder>/console.log`` for the block; the terminal for the user's lines."""

    def __init__(self, folder: Path, metrics: Path | None):
        self.folder, self.metrics = folder, metrics
        self.log = folder / run_files.CONSOLE_LOG
        self.lock = threading.Lock()

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(log, f"\n===== drift-verl {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}\n".encode())
        _end_hold(into=log)  # what was printed before the console was chosen
        sys.stdout.flush()
        sys.stderr.flush()
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        self.out = os.fdopen(os.dup(1), "w", buffering=1, encoding=encoding, errors="replace")
        self.err = os.fdopen(os.dup(2), "w", buffering=1, encoding=encoding, errors="replace")
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        self.relay = _RelayServer(self._write)
        os.environ[console.ENV] = self.relay.address  # inherited by Ray's processes (started by this driver)
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # the log is a file: Ray's relayed lines without color codes
        console.set_driver(self)
        self._write(console.OUT, f"drift-verl: run folder: {self.folder}\n"
                                  f"drift-verl: log: {self.log} (verl's, Ray's and vLLM's output; "
                                  "drift.console=full shows it here)\n")
        return self

    def _write(self, kind: bytes, text: str) -> None:
        with self.lock:
            if self.out.closed:  # a sender still talking after the job ended: its lines are in the log anyway
                return
            stream = self.err if kind == console.ERR else self.out
            stream.write(text)
            stream.flush()

    def failure(self, line: str) -> None:
        """A failure line from a thread of the driver (the job monitor, before it ends the process)."""
        print(line, file=sys.stderr, flush=True)
        self._write(console.ERR, f"drift-verl: log: {self.log}\n{line}\n")

    def _end_line(self) -> str:
        files = [f"log: {self.log}"]
        if self.metrics is not None and self.metrics.exists():
            files.append(f"metrics: {self.metrics}")
        return "drift-verl: " + "; ".join(files)

    def __exit__(self, kind, error, tb):
        failed = kind is not None and not (issubclass(kind, SystemExit) and error.code in (None, 0))
        if failed and not issubclass(kind, SystemExit):  # the whole story for the log; its end for the terminal
            lines = "".join(traceback.format_exception(kind, error, tb))
            print(lines, file=sys.stderr, flush=True)
        self.relay.drain(timeout=2.0, idle=0.5) if failed else self.relay.drain(timeout=10.0)
        _shut_down_ray()  # Ray's own shutdown output goes to the log, not after the last line
        self.relay.drain(timeout=2.0, idle=0.5)
        self.relay.close()
        sys.stdout.flush()
        sys.stderr.flush()
        console.set_driver(None)
        os.environ.pop(console.ENV, None)
        with self.lock:
            os.dup2(self.out.fileno(), 1)
            os.dup2(self.err.fileno(), 2)
            self.out.close()
            self.err.close()
        if not failed:
            print(self._end_line(), flush=True)
            return False
        if issubclass(kind, SystemExit):  # a clear line of its own (StartupError, JobFailed): Python prints it last
            print(f"drift-verl: log: {self.log}", file=sys.stderr, flush=True)
            return False
        if issubclass(kind, KeyboardInterrupt):
            raise SystemExit(f"drift-verl: interrupted; log: {self.log}") from None
        shown = lines.rstrip("\n").splitlines()[-TRACEBACK_LINES:]
        print("\n".join(shown), file=sys.stderr, flush=True)
        last = next((line.strip() for line in reversed(shown) if line.strip()), kind.__name__)
        raise SystemExit(f"drift-verl: the run failed: {last}; log: {self.log}") from None


def _shut_down_ray(timeout: float = 30.0) -> None:
    """``ray.shutdown()`` if this process started Ray, waiting at most ``timeout`` s."""
    ray = sys.modules.get("ray")
    if ray is None or not getattr(ray, "is_initialized", lambda: False)():
        return
    done = threading.Thread(target=ray.shutdown, name="drift-ray-shutdown", daemon=True)
    done.start()
    done.join(timeout)
