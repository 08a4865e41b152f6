"""Turn Ray's silent wait for unavailable resources into a clear start-up error.

Some of verl's dependencies wait on a placement group with no timeout (TransferQueue's storage units, for
one): when the cluster lacks the CPUs/GPUs they ask for, the run hangs with no message. This watchdog runs in
the driver, and if a placement group stays pending longer than the limit, it interrupts the run and reports
what was asked for and what the cluster has; if the interrupt is not taken within ``grace_s`` (the main thread
can sit in a native call that ignores it), it prints the error and exits the process.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time


class ResourceWatchdog:
    def __init__(self, timeout_s: float, poll_s: float = 2.0, grace_s: float = 30.0):
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="drift-ray-watchdog", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def _pending_too_long(self, first_seen: dict, now: float) -> list[dict]:
        import ray

        stuck = []
        for pg_id, info in ray.util.placement_group_table().items():
            if info.get("state") != "PENDING":
                first_seen.pop(pg_id, None)
                continue
            first_seen.setdefault(pg_id, now)
            if now - first_seen[pg_id] > self.timeout_s:
                stuck.append(info)
        return stuck

    def _watch(self) -> None:
        import ray

        first_seen: dict = {}
        while not self._stop.wait(self.poll_s):
            if not ray.is_initialized():
                continue
            try:
                stuck = self._pending_too_long(first_seen, time.monotonic())
            except Exception:  # the cluster is shutting down: nothing left to watch
                continue
            if stuck:
                asked = [list(info.get("bundles", {}).values()) for info in stuck]
                self.error = (
                    f"Ray could not schedule {len(stuck)} placement group(s) within {self.timeout_s:.0f} s: "
                    f"asked for bundles {asked}, the cluster has {ray.cluster_resources()}. Raise "
                    "ray_kwargs.ray_init.num_cpus / num_gpus (logical counts are fine on one machine), or lower "
                    "the workers asked for; raise drift.ray_startup_timeout_s if the cluster is only slow."
                )
                _thread.interrupt_main()
                if not self._stop.wait(self.grace_s):  # the main thread sits in a call that ignores signals
                    print(f"drift-verl: {self.error}", file=sys.stderr, flush=True)
                    os._exit(1)
                return
