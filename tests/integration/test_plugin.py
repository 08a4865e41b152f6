"""The verl.plugins entry point registers drift-verl's components in a Ray worker, and does nothing else on import."""

import json
import os
import subprocess
import sys
import textwrap

import ray


@ray.remote(num_cpus=0)
def _registrations_in_worker() -> dict:
    import verl  # noqa: F401  (verl loads its plugins here, as in every worker of a run)
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin
    from omegaconf import OmegaConf
    from verl.plugin.platform import PlatformRegistry
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY  # registered as verl imports it, where it does

    return {
        "loss": "drift" in POLICY_LOSS_REGISTRY,
        "estimator": ADV_ESTIMATOR_REGISTRY.get("grpo_turn").__module__,
        "trainer": "drift" in TRAINER_REGISTRY,
        "platforms": PlatformRegistry.registered_names(),
        "resolvers": [OmegaConf.has_resolver(name) for name in ("drift_asset", "drift_recipes_file")],
        "search_path": [p.__name__ for p in Plugins.instance().discover(SearchPathPlugin)],
        "cpu_engine": EngineRegistry.get_engine_cls("language_model", "fsdp2") is FSDPEngineWithLMHead,
    }


def test_registrations_happen_in_a_ray_worker():
    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"env_vars": {"VERL_PLATFORM": "cpu"}})
    try:
        found = ray.get(_registrations_in_worker.remote(), timeout=180)
    finally:
        ray.shutdown()
    assert "cpu" in found["platforms"]
    assert all(found["resolvers"])
    assert "DriftVerlSearchPathPlugin" in found["search_path"]
    assert found["cpu_engine"]  # the cpu platform, selected by VERL_PLATFORM, finds verl's FSDP engine
    assert found["loss"] and found["trainer"]
    assert found["estimator"] == "drift_verl.core.turn_credit"


def test_entry_point_is_installed():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert names.get("drift_verl") == "drift_verl.integration.job.plugin"


_PROBE = """
    import json, os, sys, threading
    before = (dict(os.environ), list(sys.meta_path), {t.name for t in threading.enumerate()})
    import verl.trainer.main_ppo  # what `python -m verl.trainer.main_ppo` imports before Hydra reads its arguments
    from verl.plugin.platform import get_platform
    env, meta_path, threads = before
    print(json.dumps({
        "env": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
        "meta_path": [type(f).__module__ for f in sys.meta_path if f not in meta_path],
        "threads": sorted({t.name for t in threading.enumerate()} - threads),
        "platform": get_platform().device_name,
        "plugin": "drift_verl.integration.job.plugin" in sys.modules,
    }))
"""


def _import_verl(plugins: str) -> dict:
    """What importing verl changed in a fresh process whose command line asks for drift-verl's recipe and the cpu
    platform (``plugins``: verl's VERL_USE_EXTERNAL_PLUGINS, ``none`` for verl alone)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_ENGINE_DEVICE")}
    env["VERL_USE_EXTERNAL_PLUGINS"] = plugins
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_PROBE), "+recipe=drift", "+platform=cpu"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_verl_with_the_plugin_only_registers():
    """No argv sniffing, no thread, no environment variable, no exit: the command line names the cpu platform and a
    recipe, and the process stays as verl alone leaves it, except for the one import hook (trainer mode drift)."""
    alone, with_plugin = _import_verl("none"), _import_verl("drift_verl")
    assert with_plugin["plugin"] and not alone["plugin"]
    assert with_plugin["env"] == alone["env"]
    assert with_plugin["threads"] == alone["threads"]
    assert sorted(with_plugin["meta_path"]) == sorted([*alone["meta_path"], "drift_verl.integration.job.plugin"])
    assert with_plugin["platform"] == alone["platform"] != "cpu"  # selected when the job starts, not on import


def test_main_ppo_reaches_the_recipes_through_the_plugin_alone():
    """``python -m verl.trainer.main_ppo +recipe=...``: Hydra finds drift-verl's groups because the verl plugin put
    them on its search path (no Hydra plugin of drift-verl is installed for its own discovery to find)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import verl.trainer.main_ppo
        from hydra import compose, initialize_config_module
        from hydra.core.plugins import Plugins
        from hydra.plugins.search_path_plugin import SearchPathPlugin
        print([p.__module__ for p in Plugins.instance().discover(SearchPathPlugin)])
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            config = compose(config_name="ppo_trainer", overrides=["+recipe=drift", "+task=tiny"])
        print(config.drift.recipe, config.trainer.v1.trainer_mode)
        """)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    search_path_plugins, recipe = proc.stdout.strip().splitlines()[-2:]
    assert search_path_plugins == "['drift_verl.integration.job.plugin']"
    assert recipe == "drift drift"
