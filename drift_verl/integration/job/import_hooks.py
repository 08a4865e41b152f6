"""Run a callback right after a module is first imported.

Used for one registration: trainer mode ``drift`` in verl's trainer registry, which lives in
``verl/trainer/ppo/v1/trainer_base.py``. verl 0.9.1 looks the mode up in its TaskRunner (``main_ppo.TaskRunnerV1``),
a Ray actor that ``python -m verl.trainer.main_ppo`` starts with no recipe code of its own, so the registration
must come from the verl plugin, which runs in every process. Importing that module eagerly there would select
verl's platform while verl is still loading its plugins (``trainer_base`` imports verl's engines, and the FSDP
engine's module asks for the device as it loads) and would cost each process 1-4 s of CPU (TransferQueue, the
engines, the trainers); so the plugin registers when, and only where, verl itself imports the registry: the
TaskRunner and the agent-loop workers (README "Layout").
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, callbacks: list[Callable[[ModuleType], None]]):
        self._loader = loader
        self._callbacks = callbacks

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        for callback in self._callbacks:
            callback(module)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.pending: dict[str, list[Callable[[ModuleType], None]]] = {}

    def find_spec(self, fullname, path, target=None):
        callbacks = self.pending.pop(fullname, None)
        if callbacks is None:
            return None
        spec = importlib.util.find_spec(fullname)  # the real spec, from the finders after this one
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _CallbackLoader(spec.loader, callbacks)
        return spec


_FINDER = _PostImportFinder()


def when_imported(module_name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once ``module_name`` is imported (now, if it already is)."""
    if module_name in sys.modules:
        callback(sys.modules[module_name])
        return
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _FINDER.pending.setdefault(module_name, []).append(callback)
