"""verl plugin entry point (``verl.plugins`` group): verl imports it on every ``import verl``, in every process of
a run (driver, TaskRunner, Ray workers, vLLM's processes). It only adds registry entries, the same in every process
whatever its command line or environment:

- Hydra's search path gets drift-verl's configs (``pkg://recipes``), so ``python -m verl.trainer.main_ppo
  +recipe=drift`` finds the recipe wherever this plugin is loaded; ``import verl`` runs before Hydra composes the
  config. (A ``hydra_plugins`` namespace package, Hydra's own discovery, was missed by editable installs, and
  ``+recipe=drift`` then silently became a plain key over plain PPO.)
- verl's platform registry gets the ``cpu`` platform, set up only where verl selects it
  (:mod:`drift_verl.platform.cpu`);
- verl's ``core_algos`` registries get the ``drift`` policy loss and the ``grpo_turn`` advantage estimator
  (importing ``core_algos`` costs ~0.3 s of CPU after ``import verl`` and selects no platform);
- verl's trainer registry gets trainer mode ``drift`` where verl imports that registry, the TaskRunner
  (:func:`when_imported` below; README "Layout" says why not eagerly);
- OmegaConf gets the resolvers the recipes use: ``drift_asset`` (the embedded task's files) and
  ``drift_recipes_file`` (a file shipped with the recipes, e.g. the agent-loop list verl reads).

The feedback agent loop is not registered here: the recipes name it in verl's
``actor_rollout_ref.rollout.agent.agent_loop_config_path`` (``recipes/agent_loops.yaml``).
verl swallows plugin import errors at debug level; ``tests/integration/test_plugin.py`` checks in a Ray worker that
the registrations happened, and in a fresh process that importing verl does nothing else.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from importlib.resources import files
from types import ModuleType

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf
from verl.trainer.ppo import core_algos

from drift_verl.core import turn_credit
from drift_verl.core.loss import register as register_loss
from drift_verl.platform import cpu  # noqa: F401  (@PlatformRegistry.register("cpu"))
from drift_verl.tiny import assets
import recipes  # noqa: F401  (Hydra's ConfigStore: drift_defaults, which recipe/common.yaml starts from)


class DriftVerlSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="drift-verl", path="pkg://recipes")


def recipes_file(name: str) -> str:
    """OmegaConf resolver ``${drift_recipes_file:NAME}``: the absolute path of a file of the ``recipes`` package
    (verl reads such files by path, from any working directory)."""
    return str(files("recipes") / name)


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
    """Call ``callback(module)`` once ``module_name`` is imported (now, if it already is).

    For trainer mode ``drift``: verl's trainer registry lives in ``verl/trainer/ppo/v1/trainer_base.py``, which
    verl 0.9.1 imports in its TaskRunner (``main_ppo.TaskRunnerV1``), a Ray actor with no recipe code of its own.
    Importing it here, eagerly, would select verl's platform while verl is still loading its plugins (it imports
    verl's engines, and the FSDP engine's module asks for the device as it loads) and would cost each process
    1-4 s of CPU (README "Layout"). ``tests/integration/test_plugin.py`` checks the registration in a Ray worker,
    so a verl that moves the registry fails a test."""
    if module_name in sys.modules:
        callback(sys.modules[module_name])
        return
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _FINDER.pending.setdefault(module_name, []).append(callback)


def _register_trainer(_trainer_base) -> None:
    import drift_verl.integration.training.trainer  # noqa: F401  (@register_trainer("drift"))


Plugins.instance().register(DriftVerlSearchPathPlugin)
register_loss(core_algos)
if turn_credit.NAME not in core_algos.ADV_ESTIMATOR_REGISTRY:
    core_algos.register_adv_est(turn_credit.NAME)(turn_credit.turn_level_advantage)
when_imported("verl.trainer.ppo.v1.trainer_base", _register_trainer)
for name, resolver in (("drift_asset", assets.resolve), ("drift_recipes_file", recipes_file)):
    if not OmegaConf.has_resolver(name):
        OmegaConf.register_new_resolver(name, resolver)
