"""The checks of a job's configuration that need more than the ``drift:`` section, in the driver, before Ray starts.

The section itself is typed and checked by :class:`drift_verl.core.config.DriftConfig` (the one place its defaults
and ranges are written); :func:`check_job` adds what needs the rest of the config or a file: enough prompts for one
mini-batch, a per-turn token cap that fits the response budget, a verifier that imports, an environment that
starts, a given store that fits.
"""

from __future__ import annotations

from drift_verl.core.config import ConfigError, DriftConfig
from drift_verl.core.errors import ClearError


def _train_rows(files) -> int:
    import pyarrow.parquet as pq

    files = [files] if isinstance(files, str) else list(files)
    return sum(pq.ParquetFile(str(f)).metadata.num_rows for f in files)


def _check_environment(env) -> None:
    """``drift.env.name`` loads and its class takes ``drift.env``: a job whose every trajectory would break ends
    here, before Ray starts."""
    from drift_verl.core.environment import environment_class

    try:
        environment_class(env.name)(env)
    except Exception as error:  # the user's constructor: whatever it raises
        message = str(error) if isinstance(error, ClearError) else f"{type(error).__name__}: {error}"
        raise ConfigError(f"drift.env: the environment {env.name!r} does not start: {message}", "env.name") from None


def _check_sampler(config) -> None:
    """verl hands a custom sampler neither DAPO's group filter nor the failed-group refill, and replaces its async
    buffer with it: with drift-verl's :class:`~drift_verl.integration.training.rollout_io.PolledReplayBuffer` (a
    synchronous buffer) those settings would be silently off, so they end the job here."""
    v1 = config.trainer.get("v1") or {}
    sampler = v1.get("sampler") or {}
    if (sampler.get("custom_sampler") or {}).get("name") != "PolledReplayBuffer":
        return
    filter_groups = config.algorithm.get("filter_groups") or {}
    mode = v1.get("trainer_mode", "sync")
    for setting, on in (("algorithm.filter_groups.enable", filter_groups.get("enable", False)),
                        ("trainer.v1.sampler.sync_refill_failed_groups", sampler.get("sync_refill_failed_groups",
                                                                                     False)),
                        (f"trainer.v1.trainer_mode={mode}", mode not in ("sync", "drift"))):  # drift: its own buffer
        if on:
            raise ConfigError(f"{setting} with trainer.v1.sampler.custom_sampler PolledReplayBuffer (a synchronous "
                              "buffer, which verl gives no group filter or refill): drop the custom sampler "
                              "(verl polls every 2 s) or that setting")


def check_job(config, drift: DriftConfig) -> None:
    """The checks that need more than the ``drift`` section; run in the driver before Ray starts."""
    from drift_verl.integration.verifier import load_function

    verifier = config.reward.get("custom_reward_function") or {}
    if verifier.get("path"):
        try:
            load_function(str(verifier.path), str(verifier.name))
        except Exception as error:  # any import failure of the user's file
            raise ConfigError(f"reward.custom_reward_function: {verifier.path} (function {verifier.name!r}) does "
                              f"not load: {type(error).__name__}: {error}") from None
    _check_environment(drift.env)
    budget = int(config.data.max_response_length)
    if drift.env.turn_max_tokens is not None and drift.env.turn_max_tokens > budget:
        raise ConfigError(f"drift.env.turn_max_tokens={drift.env.turn_max_tokens}: larger than the whole response "
                          f"budget data.max_response_length={budget} (all turns and feedback messages together)")
    if config.algorithm.adv_estimator == "grpo_turn" and not config.trainer.get("use_v1", False):
        raise ConfigError("algorithm.adv_estimator=grpo_turn needs trainer.use_v1=true (verl's legacy trainer puts "
                          "the whole return at the last token, so every turn would get the same credit)")
    _check_sampler(config)
    if drift.recipe != "drift":
        return
    from drift_verl.core.store import FEEDBACK_LOOP
    from drift_verl.integration.training.store_identity import agent_loop

    loop = agent_loop(config)
    reward_model = config.reward.get("reward_model") or {}
    if loop != FEEDBACK_LOOP and reward_model.get("enable") and not reward_model.get("enable_resource_pool"):
        raise ConfigError(f"actor_rollout_ref.rollout.agent.default_agent_loop={loop} with a colocated reward model "
                          "(reward.reward_model.enable without enable_resource_pool): verl scores such rollouts in "
                          "its trainer, after DRIFT has stored them unscored; give the reward model its own resource "
                          "pool, or score with reward.custom_reward_function")
    if drift.store:
        from drift_verl.integration.training.store_identity import open_for_training

        open_for_training(drift.store, config)  # a foreign or mismatched store ends the job before Ray starts
        return
    prompts = _train_rows(config.data.train_files)
    if drift.max_prompts:
        prompts = min(prompts, drift.max_prompts)
    mini_batch = int(config.actor_rollout_ref.actor.ppo_mini_batch_size)
    if prompts < mini_batch:
        raise ConfigError(f"drift.max_prompts / data.train_files give {prompts} training prompts, fewer than one "
                          f"mini-batch (actor_rollout_ref.actor.ppo_mini_batch_size={mini_batch} prompts): lower "
                          "ppo_mini_batch_size or use more prompts")
