"""Hydra composition of drift-verl's groups on top of verl's ppo_trainer, both entry points."""

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from drift_verl.main import StartupError, check_recipe


def _compose(module: str, name: str, overrides: list[str]):
    with initialize_config_module(config_module=module, version_base=None):
        return compose(config_name=name, overrides=overrides)


def test_drift_main_composes_recipe_task_and_cpu_preset():
    config = _compose("recipes", "drift_main", ["recipe=grpo", "platform=cpu", "trainer.total_epochs=3"])
    assert check_recipe(config) == "grpo"
    assert config.algorithm.adv_estimator == "grpo"
    assert config.trainer.device == "cpu" and config.ray_kwargs.ray_init.num_gpus == 1
    assert config.actor_rollout_ref.actor.strategy == "fsdp2"
    assert config.trainer.total_epochs == 3  # command line wins over the recipe, as in verl
    assert OmegaConf.to_container(config.actor_rollout_ref.model)["path"] == "${drift_asset:tiny_reference}"
    assert config.actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype == "fp32"


def test_main_ppo_finds_the_recipe_through_the_search_path_plugin():
    config = _compose("verl.trainer.config", "ppo_trainer", ["+recipe=grpo", "+task=tiny", "+platform=cpu"])
    assert check_recipe(config) == "grpo"
    assert config.algorithm.adv_estimator == "grpo"
    assert config.trainer.device == "cpu"


@pytest.mark.parametrize("recipe, extra", [("drift", ["+task_recipe=tiny_drift"]), ("grpo", ["+task_recipe=tiny_grpo"])])
def test_both_entry_points_compose_the_same_job(recipe, extra):
    """README "Running": ``python -m drift_verl.main recipe=X platform=cpu`` and ``python -m verl.trainer.main_ppo
    +recipe=X +task=tiny +task_recipe=tiny_X +platform=cpu`` compose one config (Hydra's own node aside)."""
    ours = _compose("recipes", "drift_main", [f"recipe={recipe}", "platform=cpu"])
    verls = _compose("verl.trainer.config", "ppo_trainer", [f"+recipe={recipe}", "+task=tiny", *extra, "+platform=cpu"])
    assert OmegaConf.to_container(ours) == OmegaConf.to_container(verls)


def test_recipes_name_the_feedback_loop_in_verls_agent_loop_list():
    """verl registers the agent loops listed in rollout.agent.agent_loop_config_path in each agent-loop worker
    (``AgentLoopWorker``: ``resolve_config_path``, then ``OmegaConf.load``)."""
    from hydra.utils import get_class
    from verl.utils.import_utils import resolve_config_path

    from drift_verl.integration.training.feedback_loop import FeedbackAgentLoop

    agent = _compose("recipes", "drift_main", ["recipe=grpo"]).actor_rollout_ref.rollout.agent
    loops = {loop.name: loop for loop in OmegaConf.load(resolve_config_path(agent.agent_loop_config_path))}
    assert get_class(loops[agent.default_agent_loop]._target_) is FeedbackAgentLoop


def test_plain_ppo_config_fails_the_recipe_check():
    config = _compose("verl.trainer.config", "ppo_trainer", [])
    with pytest.raises(StartupError, match="no drift-verl recipe took effect"):
        check_recipe(config)
    OmegaConf.set_struct(config, False)
    config.recipe = "drift"  # what `+recipe=drift` becomes without the search-path plugin
    with pytest.raises(StartupError, match="recipe"):
        check_recipe(config)


def test_no_gpu_without_cpu_preset_says_what_to_add(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    proc = subprocess.run(
        [sys.executable, "-m", "drift_verl.main", "recipe=grpo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "platform=cpu" in proc.stderr


def test_task_settings_win_over_recipe_defaults():
    config = _compose("recipes", "drift_main", ["recipe=grpo"])
    assert config.drift.env.turn_max_tokens == 24  # tiny task's value, not the recipe's null
    assert config.drift.env.max_turns == 5 and config.drift.env.feedback == "Incorrect. Please think again."
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "drift_feedback"


def test_a_tasks_recipe_specific_settings_apply_to_that_recipe_only():
    """task_recipe/tiny_grpo.yaml and tiny_drift.yaml: each recipe at the setting the comparison protocol chose for
    it on dev (GRPO: 32 prompts per on-policy update, 48 steps; DRIFT: 16 whole groups per step, 8 epochs); the
    command line still wins."""
    grpo, drift = (_compose("recipes", "drift_main", [f"recipe={r}"]) for r in ("grpo", "drift"))
    assert (grpo.data.train_batch_size, grpo.actor_rollout_ref.actor.ppo_mini_batch_size) == (32, 32)
    assert (drift.data.train_batch_size, drift.actor_rollout_ref.actor.ppo_mini_batch_size) == (16, 16)
    assert (drift.drift.epochs, drift.actor_rollout_ref.actor.optim.lr, drift.data.train_max_samples) == (8, 5e-4, 256)
    assert (grpo.trainer.total_training_steps, grpo.actor_rollout_ref.actor.optim.lr,
            grpo.data.train_max_samples) == (48, 5e-4, 256)
    assert grpo.actor_rollout_ref.actor.loss_agg_mode == "seq-mean-token-mean"  # a 5-turn failure counts once
    assert grpo.algorithm.gamma == grpo.drift.gamma == 0.9  # grpo_turn's discount
    assert _compose("recipes", "drift_main", ["recipe=grpo", "data.train_batch_size=8"]).data.train_batch_size == 8
    paper = _compose("recipes", "drift_main", ["recipe=grpo", "task=qwen2.5-3b_metamath"])
    assert paper.data.train_batch_size == 8  # no task_recipe file for it: the task's own settings
    verl = _compose("verl.trainer.config", "ppo_trainer", ["+recipe=grpo", "+task=tiny", "+task_recipe=tiny_grpo"])
    assert verl.data.train_batch_size == 32


@pytest.mark.parametrize("recipe", ["drift", "grpo"])
def test_the_informative_task_is_tiny_with_higher_lower_and_its_own_reference(recipe):
    """task=tiny_informative: the tiny task and its recipe's chosen setting, with the higher_lower environment, the
    reference fine-tuned to use it, and its own experiment (its checkpoints never resume the tiny task's)."""
    from drift_verl.integration.job.quiet import console_mode

    tiny = _compose("recipes", "drift_main", [f"recipe={recipe}", "platform=cpu"])
    informative = _compose("recipes", "drift_main", [f"recipe={recipe}", "task=tiny_informative", "platform=cpu"])
    assert informative.drift.env.name == "higher_lower" and tiny.drift.env.name == "try_again"
    assert "tiny_reference_informative" in OmegaConf.to_yaml(informative.actor_rollout_ref.model)
    assert informative.trainer.experiment_name == f"{recipe}_tiny_informative" != tiny.trainer.experiment_name
    for section in ("data", "algorithm"):
        assert informative[section] == tiny[section]
    assert informative.actor_rollout_ref.actor == tiny.actor_rollout_ref.actor
    if recipe == "drift":
        assert console_mode(informative) == console_mode(tiny) == "quiet"


@pytest.mark.parametrize("recipe", ["drift", "grpo"])
def test_the_rollout_heavy_task_is_tiny_with_worked_answers_and_room_for_them(recipe):
    """task=tiny_long: the tiny task and its recipe's chosen setting, the reference that shows its working, and
    lengths that hold five worked turns and four feedback messages; verl's own checks pass."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    tiny = _compose("recipes", "drift_main", [f"recipe={recipe}", "platform=cpu"])
    long = _compose("recipes", "drift_main", [f"recipe={recipe}", "task=tiny_long", "platform=cpu"])
    assert "tiny_reference_worked" in OmegaConf.to_yaml(long.actor_rollout_ref.model)
    assert long.trainer.experiment_name == f"{recipe}_tiny_long"
    assert long.drift.env.turn_max_tokens == 48 and long.drift.env.max_turns == 5
    assert long.data.max_response_length >= 5 * 48 + 4 * 16  # a feedback message is ~14 tokens with its template
    assert long.actor_rollout_ref.rollout.max_model_len >= long.data.max_prompt_length + long.data.max_response_length
    assert long.actor_rollout_ref.actor == tiny.actor_rollout_ref.actor and long.algorithm == tiny.algorithm
    validate_config(_compose("recipes", "drift_main", [f"recipe={recipe}", "task=tiny_long", "platform=cpu",
                                                       "actor_rollout_ref.model.path=unused"]),
                    need_reference_policy(long), need_critic(long))


def test_drift_step_size_is_one_override_and_passes_verls_checks():
    """data.train_batch_size follows ppo_mini_batch_size under recipe=drift (verl requires >=; DRIFT never batches
    prompts by it), on both entry points and the paper's tasks."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    step = ["actor_rollout_ref.actor.ppo_mini_batch_size=16", "actor_rollout_ref.model.path=unused"]
    for config in (_compose("recipes", "drift_main", ["recipe=drift", "platform=cpu", *step]),
                   _compose("recipes", "drift_main", ["recipe=drift", "task=qwen2.5-3b_metamath", *step]),
                   _compose("verl.trainer.config", "ppo_trainer",
                            ["+recipe=drift", "+task=tiny", "+platform=cpu", *step])):
        assert config.data.train_batch_size == 16
        validate_config(config, need_reference_policy(config), need_critic(config))


def test_liger_on_the_cpu_platform_is_refused_at_start_up(monkeypatch):
    from drift_verl.main import check_platform

    monkeypatch.setenv("VERL_PLATFORM", "cpu")  # as the driver of a platform=cpu job has it

    config = _compose("recipes", "drift_main", ["recipe=drift", "platform=cpu",
                                                "actor_rollout_ref.model.use_liger=true"])
    with pytest.raises(StartupError, match="use_liger=true: .* no CPU backend"):
        check_platform(config)
    check_platform(_compose("recipes", "drift_main", ["recipe=drift", "platform=cpu"]))


def test_cpu_device_without_the_cpu_platform_is_refused_at_start_up(monkeypatch):
    """trainer.device=cpu alone: verl would run on its own platform choice; the preset selects drift-verl's."""
    from drift_verl.main import check_platform

    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    config = _compose("recipes", "drift_main", ["recipe=drift", "trainer.device=cpu"])
    with pytest.raises(StartupError, match="trainer.device=cpu runs on drift-verl's cpu platform.*platform=cpu"):
        check_platform(config)
