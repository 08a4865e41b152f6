"""What a run shows its user, from whichever process of the job prints it.

Why a module: with a quiet console (``drift.console``; set up in the driver by :mod:`drift_verl.integration.job.quiet`)
the driver's stdout and stderr go to the run's log file, and so does everything Ray relays from its workers.
DRIFT's trainer runs inside verl's TaskRunner, a Ray actor, so its progress bars and phase lines would land in
the log too. Here they reach the terminal instead, through a local socket the driver listens on (its address in
env ``DRIFT_VERL_CONSOLE``, inherited by the Ray workers of the job), one connection per process, messages framed
so that lines and bars stay in order. Without a quiet console (``drift.console=full``, real tasks, ``python -m
verl.trainer.main_ppo``) every function here prints as before: lines to stdout, bars to stderr.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

ENV = "DRIFT_VERL_CONSOLE"  # host:port:token of the driver's relay, set only while a quiet console is up
OUT, ERR = b"o", b"e"
_SEND_TIMEOUT_S = 10.0


class _Relay:
    """This process's connection to the driver's terminal (made on first use, again after a fork)."""

    def __init__(self, address: str):
        host, port, self.token = address.rsplit(":", 2)
        self.target = (host, int(port))
        self.sock: socket.socket | None = None
        self.pid = None
        self.broken = False
        self.lock = threading.Lock()

    def send(self, kind: bytes, text: str) -> bool:
        """False when the terminal cannot be reached (the caller then prints where it would without one)."""
        data = text.encode("utf-8", "replace")
        with self.lock:
            if self.broken:
                return False
            try:
                if self.sock is None or self.pid != os.getpid():
                    self.sock = socket.create_connection(self.target, timeout=_SEND_TIMEOUT_S)
                    self.sock.sendall(self.token.encode() + b"\n")
                    self.pid = os.getpid()
                self.sock.sendall(kind + len(data).to_bytes(4, "big") + data)
                return True
            except OSError:
                self.broken = True
                return False

    def close(self) -> None:
        with self.lock:
            if self.sock is not None and self.pid == os.getpid():
                with contextlib.suppress(OSError):
                    self.sock.close()
            self.sock, self.broken = None, True


class _Stream:
    """A text stream on the terminal (what tqdm needs: write, flush, encoding), or the fallback when unreachable."""

    encoding = "utf-8"

    def __init__(self, relay: _Relay, kind: bytes, fallback):
        self.relay, self.kind, self.fallback = relay, kind, fallback

    def write(self, text: str) -> int:
        if not self.relay.send(self.kind, text):
            self.fallback().write(text)
        return len(text)

    def flush(self) -> None:
        if self.relay.broken:
            self.fallback().flush()


_relay: _Relay | None = None
_shown = 0  # length of the text show() left on the terminal's current line
_driver = None  # the driver's quiet console (quiet.QuietConsole), for failure lines from the driver's own threads


def _connection() -> _Relay | None:
    global _relay
    address = os.environ.get(ENV)
    if not address:
        return None
    if _relay is None:
        _relay = _Relay(address)
    return None if _relay.broken else _relay


def quiet() -> bool:
    """Whether this job has a quiet console (its terminal is reachable from this process)."""
    return _connection() is not None


def bar_file():
    """The file for a progress bar (``tqdm(file=...)``): the terminal, or stderr as tqdm's default."""
    relay = _connection()
    return _Stream(relay, ERR, lambda: sys.stderr) if relay else sys.stderr


UNSIZED = {"ncols": 100, "nrows": 24}  # a bar's room on a terminal that reports no size


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on the terminal (:func:`bar_file`, unless ``file`` is given). A terminal that reports a
    size of 0 (a pty nobody sized: ``script``, some container shells) makes tqdm hide its bar (it counts -1 rows
    to draw in), and the reference policy's minutes-long build looked frozen: there the bar gets ``UNSIZED``;
    elsewhere tqdm sizes it as usual."""
    from tqdm import tqdm

    file = kwargs.pop("file", None) or bar_file()
    try:
        size = os.get_terminal_size(file.fileno())
        unsized = size.columns == 0 or size.lines == 0
    except (AttributeError, OSError, ValueError):  # not a terminal (a log file, the relay): tqdm's own fallback
        unsized = False
    return tqdm(iterable, file=file, **{**(UNSIZED if unsized else {}), **kwargs})


def say(text: str) -> None:
    """A line for the user: stdout (verl's console, or with a quiet console the log) and the quiet terminal.
    It replaces what :func:`show` left on the terminal's current line."""
    global _shown
    print(text, flush=True)
    relay = _connection()
    if relay:
        first, _, rest = text.partition("\n")
        relay.send(OUT, ("\r" + first.ljust(_shown) if _shown else first) + ("\n" + rest if rest else "") + "\n")
    _shown = 0


def show(text: str) -> None:
    """What is going on now, on the quiet terminal only, without a newline: the next :func:`say` replaces it."""
    global _shown
    relay = _connection()
    if relay and relay.send(OUT, ("\r" if _shown else "") + text):
        _shown = max(_shown, len(text))


def close() -> None:
    """This process is done with the terminal (the driver stops waiting for it)."""
    global _relay
    if _relay is not None:
        _relay.close()


def set_driver(console) -> None:
    global _driver
    _driver = console


def report_failure(line: str) -> None:
    """A failure line from the driver (the job monitor's thread): on the terminal with the log's path, and in the
    log; without a quiet console, stderr."""
    if _driver is not None:
        _driver.failure(line)
    else:
        print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def on_terminal():
    """In the driver: ``sys.stderr`` is the terminal for the block (a progress bar the user should see, e.g. the
    reference policy's build); a no-op without a quiet console."""
    if _driver is None:
        yield
        return
    saved, sys.stderr = sys.stderr, _driver.err
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = saved
