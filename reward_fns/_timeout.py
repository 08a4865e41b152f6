"""Bound a verifier call by wall-clock time, from any thread.

verl's reward loop calls reward functions in executor threads, where signal-based timeouts (math-verify's
default) cannot work. The call runs in a fresh daemon thread instead; past the deadline it is abandoned
(a thread cannot be killed: it finishes in the background and its result is dropped) and the caller scores 0.
"""

from __future__ import annotations

import threading


def call_with_timeout(fn, timeout_s: float, *args):
    """``fn(*args)``, or ``TimeoutError`` when it is not done within ``timeout_s`` seconds."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except BaseException as error:  # noqa: BLE001  (re-raised in the caller's thread)
            outcome["error"] = error

    worker = threading.Thread(target=target, name="reward-fn", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} did not finish within {timeout_s} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
