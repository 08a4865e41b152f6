"""The ``drift:`` section is typed and validated before Ray starts; a bad value names its key."""

import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_module

from drift_verl.core.config import ConfigError, DriftConfig
from drift_verl.integration.job.config import check_job

PRESETS = [[], ["task=qwen2.5-3b_metamath"], ["task=qwen2.5-7b_metamath"]]


def _compose(overrides):
    with initialize_config_module(config_module="recipes", version_base=None):
        return compose(config_name="drift_main", overrides=overrides)


@pytest.mark.parametrize("recipe", ["drift", "grpo"])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_configuration_is_valid(recipe, preset):
    drift = DriftConfig.from_section(_compose([f"recipe={recipe}", *preset]).drift)
    assert drift.recipe == recipe and drift.env.max_turns == 5 and drift.health.poll_s > 0


def test_the_tiny_task_passes_the_job_checks():
    config = _compose(["recipe=drift", "platform=cpu"])
    drift = DriftConfig.from_section(config.drift)
    assert (drift.epochs, drift.env.turn_max_tokens, drift.beta) == (8, 24, 0.1)
    check_job(config, drift)


@pytest.mark.parametrize("override, message", [
    ("drift.beta=0", r"drift.beta=0: expected a number > 0"),
    ("drift.beta=-1", r"drift.beta=-1"),
    ("drift.gamma=0", r"drift.gamma=0: expected a number in \(0, 1\]"),
    ("drift.gamma=1.5", r"drift.gamma=1.5"),
    ("+drift.betta=0.2", r"unknown key drift.betta; drift.\* keys are: beta, "),
    ("+drift.env.max_turn=3", r"unknown key drift.env.max_turn;"),
    ("+drift.health.poll=1", r"unknown key drift.health.poll;"),
    ("drift.env.answer_format=xml", r"drift.env.answer_format='xml': expected one of"),
    ("drift.epochs=0", r"drift.epochs=0: expected an integer >= 1"),
    ("drift.shuffle_window=0", r"drift.shuffle_window=0: expected an integer >= 1"),
    ("drift.weighting=best", r"drift.weighting='best'"),
    ("drift.normalization=global", r"drift.normalization='global': expected group or store \(alias: batch\)"),
    ("drift.loss_normalization=sum", r"drift.loss_normalization='sum': expected mean or weight_sum"),
    ("drift.health.weight_sync_timeout_s=0", r"drift.health.weight_sync_timeout_s must be"),
    ("drift.env.verifier_timeout_s=0", r"drift.env.verifier_timeout_s=0"),
    ("drift.phases=[update]", r"drift.phases=\['update'\]: expected \[rollouts,weights,update\] or \[rollouts\] or "
                              r"\[weights,update\]"),
    ("drift.store=/somewhere", r"drift.store='/somewhere': expected null unless drift.phases=\[weights,update\]"),
    ("drift.rounds=2 drift.phases=[rollouts]", r"drift.rounds=2: expected 1 with drift.phases other than all three"),
])
def test_bad_values_and_unknown_keys_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        DriftConfig.from_section(_compose(["recipe=drift", *override.split()]).drift)


def test_weight_and_loss_normalisation_options():
    """``batch`` is the old name of ``store`` (one normaliser over the whole store); the loss normaliser per optimizer
    step defaults to the mean over the step's trajectories."""
    drift = DriftConfig.from_section(_compose(["recipe=drift"]).drift)
    assert (drift.normalization, drift.loss_normalization) == ("group", "mean")
    for name in ("store", "batch"):
        drift = DriftConfig.from_section(_compose(["recipe=drift", f"drift.normalization={name}",
                                                   "drift.loss_normalization=weight_sum"]).drift)
        assert (drift.normalization, drift.weight_config().normalization, drift.loss_normalization) == \
            ("store", "store", "weight_sum")


@pytest.mark.parametrize("overrides, message", [
    (["drift.max_prompts=3"], r"3 training prompts, fewer than one mini-batch \(.*ppo_mini_batch_size=16"),
    (["drift.env.turn_max_tokens=500"], r"turn_max_tokens=500: larger than .* data.max_response_length=192"),
    (["reward.custom_reward_function.path=/nowhere/verify.py"], r"/nowhere/verify.py .* does not load"),
    (["reward.custom_reward_function.name=score"], r"pkg://reward_fns.exact \(function 'score'\) does not load"),
    (["algorithm.adv_estimator=grpo_turn", "trainer.use_v1=false"], r"grpo_turn needs trainer.use_v1=true"),
    (["drift.env.name=nowhere"], r"drift.env: the environment 'nowhere' does not start: drift.env.name='nowhere': "
                                 r"expected one of \['higher_lower', 'try_again'\] or pkg://module:Class"),
    (["drift.env.name=higher_lower", "+drift.env.options.hi=x"], r"'higher_lower' does not start: .*unknown key 'hi'"),
    (["actor_rollout_ref.rollout.agent.default_agent_loop=single_turn_agent", "reward.reward_model.enable=true"],
     r"default_agent_loop=single_turn_agent with a colocated reward model"),
])
def test_job_checks_name_the_keys(overrides, message):
    config = _compose(["recipe=drift", "platform=cpu", *overrides])
    with pytest.raises(ConfigError, match=message):
        check_job(config, DriftConfig.from_section(config.drift))


@pytest.mark.parametrize("override, message", [
    ("algorithm.filter_groups.enable=true", r"algorithm.filter_groups.enable with .* PolledReplayBuffer"),
    ("trainer.v1.sampler.sync_refill_failed_groups=true", r"sync_refill_failed_groups with .* PolledReplayBuffer"),
    ("trainer.v1.trainer_mode=async", r"trainer_mode=async with .* PolledReplayBuffer"),
])
def test_the_polled_buffer_refuses_what_verl_would_not_give_it(override, message):
    """task=tiny_long's GRPO plugs in PolledReplayBuffer through verl's custom_sampler, which verl builds without
    DAPO's filter or the refill and in place of its async buffer: those settings stop the job instead of going off."""
    config = _compose(["recipe=grpo", "task=tiny_long", "platform=cpu"])
    check_job(config, DriftConfig.from_section(config.drift))  # as it ships
    config = _compose(["recipe=grpo", "task=tiny_long", "platform=cpu", override])
    with pytest.raises(ConfigError, match=message):
        check_job(config, DriftConfig.from_section(config.drift))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("override, key", [("drift.beta=0", "drift.beta"), ("+drift.betta=0.2", "drift.betta")])
def test_the_job_stops_before_ray_starts(tmp_path, override, key):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "drift_verl.main", "recipe=drift", "platform=cpu", override],
                          cwd=tmp_path, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"drift-verl: {key}") or \
        f"unknown key {key}" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr
    assert time.monotonic() - start < 120
