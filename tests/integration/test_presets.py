"""The paper's configurations (task options): every one x recipe x GPU count composes, carries the paper's settings, and passes
verl's own config validation; the launch and data scripts agree with them. Nothing runs."""

import os
import shlex
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

from drift_verl.main import check_recipe
from tests.real_data import REPO, SAMPLES

PRESETS = {"qwen2.5-3b_metamath": "Qwen/Qwen2.5-3B-Instruct", "qwen2.5-7b_metamath": "Qwen/Qwen2.5-7B-Instruct"}
RECIPES = ("drift", "grpo")
GPUS = (4, 8)
TRAJECTORIES_PER_STEP = 128


def compose_main(overrides: list[str], module="recipes", name="drift_main"):
    with initialize_config_module(config_module=module, version_base=None):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("gpus", GPUS)
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_has_the_papers_settings_and_passes_verl_validation(preset, recipe, gpus):
    config = compose_main([f"recipe={recipe}", f"task={preset}", f"trainer.n_gpus_per_node={gpus}"])
    assert check_recipe(config) == recipe
    actor, rollout = config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout
    assert config.actor_rollout_ref.model.path == PRESETS[preset]
    assert config.trainer.n_gpus_per_node == gpus
    # N, T, gamma, beta
    assert rollout.n == 16 and config.drift.env.max_turns == 5
    assert config.drift.gamma == 0.9 and config.drift.beta == 0.1
    # optimiser: lr 5e-6, constant after 10% warm-up, one epoch over all of the data
    assert actor.optim.lr == 5e-6 and actor.optim.lr_warmup_steps_ratio == 0.1
    assert actor.optim.lr_scheduler_type == "constant"
    assert config.trainer.total_epochs == 1 and config.trainer.total_training_steps is None
    assert config.drift.epochs == 1  # DRIFT: one weighted-SFT pass over the store
    # 128 trajectories per optimizer step; GRPO: one on-policy update per step
    assert actor.ppo_mini_batch_size * rollout.n == TRAJECTORIES_PER_STEP
    assert config.data.train_batch_size == actor.ppo_mini_batch_size and actor.ppo_epochs == 1
    assert (TRAJECTORIES_PER_STEP // gpus) % actor.ppo_micro_batch_size_per_gpu == 0
    # 512 tokens per answer, all 5 turns fit, rollouts at temperature 1, greedy single-sample evaluation
    assert config.drift.env.turn_max_tokens == 512
    assert config.data.max_response_length >= 5 * 512
    assert rollout.max_model_len >= config.data.max_prompt_length + config.data.max_response_length
    assert rollout.temperature == 1.0 and rollout.top_p == 1.0 and rollout.top_k == -1
    assert rollout.val_kwargs.do_sample is False and rollout.val_kwargs.n == 1
    # the math verifier, agreeing with the environment on the answer format
    reward = config.reward.custom_reward_function
    assert reward.path == "pkg://reward_fns.math" and reward.name == "compute_score"
    assert reward.reward_kwargs.answer_format == config.drift.env.answer_format == "answer"
    assert reward.reward_kwargs.timeout_s < config.drift.env.verifier_timeout_s
    # verl's own checks, as its main runs them before starting anything
    validate_config(config, need_reference_policy(config), need_critic(config))
    rollout_config = omega_conf_to_dataclass(rollout)
    assert rollout_config.tensor_model_parallel_size == 1
    # the default task's values are all replaced: nothing refers to the tiny task or model
    resolved = OmegaConf.to_container(config, resolve=True)
    assert "tiny" not in str(resolved)
    assert resolved["trainer"]["experiment_name"] == f"{recipe}_metamath"


@pytest.mark.parametrize("preset", PRESETS)
def test_a_paper_task_replaces_the_tiny_task(preset):
    """The paper's configurations are options of the task group: nothing of task=tiny is left underneath."""
    config = OmegaConf.to_yaml(compose_main(["recipe=drift", f"task={preset}"]))  # unresolved: interpolations show
    assert "drift_asset" not in config and "task_name: metamath" in config
    assert compose_main(["recipe=drift", f"task={preset}"]).drift.env.turn_max_tokens == 512


@pytest.mark.parametrize("preset", PRESETS)
def test_verl_entry_point_composes_the_same(preset):
    ours = compose_main(["recipe=drift", f"task={preset}"])
    verls = compose_main(["+recipe=drift", f"+task={preset}"], module="verl.trainer.config", name="ppo_trainer")
    for key in ("actor_rollout_ref", "data", "reward", "drift", "algorithm"):
        assert OmegaConf.to_container(ours[key]) == OmegaConf.to_container(verls[key]), key


def _launch(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "launch" / "metamath.sh"), *args],
        env={**os.environ, "PYTHON": "echo", **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize(("model", "preset"), [("3b", "qwen2.5-3b_metamath"), ("7b", "qwen2.5-7b_metamath")])
def test_launch_script_runs_the_preset(recipe, model, preset, tmp_path):
    proc = _launch(recipe, model, "8", "trainer.save_freq=100", DATA_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout)
    assert argv[:2] == ["-m", "drift_verl.main"]
    config = compose_main(argv[2:])
    assert check_recipe(config) == recipe
    assert config.actor_rollout_ref.model.path == PRESETS[preset]
    assert config.trainer.n_gpus_per_node == 8 and config.trainer.save_freq == 100
    assert config.data.train_files == str(tmp_path / "metamathqa_math.parquet")


@pytest.mark.parametrize("args", [(), ("drift", "3b"), ("ppo", "3b", "8"), ("drift", "14b", "8"), ("drift", "3b", "2")])
def test_launch_script_rejects_other_arguments(args):
    proc = _launch(*args)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_data_script_writes_what_the_presets_read(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "PYTHON": sys.executable,
           "METAMATHQA": str(SAMPLES / "metamathqa_sample.jsonl"), "MATH500": str(SAMPLES / "math500_test.jsonl"),
           "GSM8K_TEST": str(SAMPLES / "gsm8k_test.jsonl")}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "data" / "prepare_paper.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    config = compose_main(["recipe=drift", "task=qwen2.5-3b_metamath", f"data_dir={tmp_path}"])
    for path in [config.data.train_files, *config.data.val_files]:
        assert os.path.isfile(path), path


def _readme_commands(marker: str) -> list[list[str]]:
    lines = (REPO / "README.md").read_text().splitlines()
    return [shlex.split(line)[3:] for line in lines if line.startswith("python -m drift_verl.main") and marker in line]


@pytest.mark.parametrize("argv", _readme_commands("n_gpus_per_node=1"), ids=lambda argv: argv[1])
def test_readme_single_gpu_commands_pass_verl_validation(argv):
    config = compose_main(argv)
    assert config.trainer.n_gpus_per_node == 1
    validate_config(config, need_reference_policy(config), need_critic(config))
    actor = config.actor_rollout_ref.actor
    assert actor.ppo_mini_batch_size * config.actor_rollout_ref.rollout.n == TRAJECTORIES_PER_STEP
    assert TRAJECTORIES_PER_STEP % actor.ppo_micro_batch_size_per_gpu == 0
