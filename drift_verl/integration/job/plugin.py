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
  (:mod:`drift_verl.integration.job.import_hooks`; README "Layout" says why not eagerly);
- OmegaConf gets the resolvers the recipes use: ``drift_asset`` (the embedded task's files) and
  ``drift_recipes_file`` (a file shipped with the recipes, e.g. the agent-loop list verl reads).

The feedback agent loop is not registered here: the recipes name it in verl's
``actor_rollout_ref.rollout.agent.agent_loop_config_path`` (``recipes/agent_loops.yaml``).
verl swallows plugin import errors at debug level; ``tests/integration/test_plugin.py`` checks in a Ray worker that
the registrations happened, and in a fresh process that importing verl does nothing else.
"""

from __future__ import annotations

from importlib.resources import files

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf
from verl.trainer.ppo import core_algos

from drift_verl.core import turn_credit
from drift_verl.core.loss import register as register_loss
from drift_verl.integration.job.import_hooks import when_imported
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
