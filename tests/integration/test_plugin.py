"""The verl.plugins entry point really registers drift-verl's components in a Ray worker."""

import pytest
import ray


@ray.remote(num_cpus=0)
def _registrations_in_worker() -> dict:
    import verl  # noqa: F401  (verl loads its plugins here, as in every worker of a run)
    from omegaconf import OmegaConf
    from verl.plugin.platform import PlatformRegistry
    from verl.workers.engine.base import EngineRegistry

    # registered as verl imports its registries' modules, in whichever process imports them
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

    return {
        "agent_loop": _agent_loop_registry.get("drift_feedback", {}).get("_target_"),
        "loss": "drift" in POLICY_LOSS_REGISTRY,
        "estimator": ADV_ESTIMATOR_REGISTRY.get("grpo_turn").__module__,
        "trainer": "drift" in TRAINER_REGISTRY,
        "platforms": PlatformRegistry.registered_names(),
        "resolver": OmegaConf.has_resolver("drift_asset"),
        "cpu_engine": "cpu" in EngineRegistry._engines.get("language_model", {}).get("fsdp2", {}),
    }


def test_registrations_happen_in_a_ray_worker():
    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"env_vars": {"VERL_PLATFORM": "cpu"}})
    try:
        found = ray.get(_registrations_in_worker.remote(), timeout=180)
    finally:
        ray.shutdown()
    assert "cpu" in found["platforms"]
    assert found["resolver"]
    assert found["cpu_engine"]
    assert found["agent_loop"] == "drift_verl.integration.feedback_loop.FeedbackAgentLoop"
    assert found["loss"] and found["trainer"]
    assert found["estimator"] == "drift_verl.core.turn_credit"


def test_entry_point_is_installed():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert names.get("drift_verl") == "drift_verl.integration.plugin"


def test_recipe_override_without_search_path_plugin_fails_loudly(monkeypatch):
    from hydra.core.plugins import Plugins

    from drift_verl.integration.plugin import check_search_path_plugin

    check_search_path_plugin(["main_ppo.py", "+recipe=drift"])  # installed: found
    check_search_path_plugin(["main_ppo.py", "trainer.total_epochs=1"])  # no recipe asked: nothing to check
    monkeypatch.setattr(Plugins.instance(), "discover", lambda _kind: [])
    with pytest.raises(SystemExit, match="recipe would be ignored"):
        check_search_path_plugin(["main_ppo.py", "+recipe=drift"])
    check_search_path_plugin(["main_ppo.py", "+recipe=drift", "hydra.searchpath=[pkg://recipes]"])
