"""Which trajectory store a verl job's configuration rolls out into, and whether it may train from a given one.

The store (:mod:`drift_verl.core.store`) is named by a fingerprint of a spec; here that spec is read from verl's
config keys (model, data, rollout, reward) and the typed ``drift.env``. The spec's keys and how each value is
written are the identity of every store made so far: ``tests/integration/test_store_identity.py`` pins a
fingerprint, so a change here that would orphan existing stores fails a test.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import OmegaConf

from drift_verl.core.config import DriftConfig
from drift_verl.core.environment import BUILT_IN
from drift_verl.core.identity import content_identity, tokenizer_identity
from drift_verl.core.store import FEEDBACK_LOOP, SCHEMA_VERSION, StoreError, TrajectoryStore, fingerprint
from drift_verl.integration.verifier import pkg_module


# drift.env keys that came after stores existed, with their defaults (left out of the spec at those defaults)
ENV_ADDED = {"name": "try_again", "options": {}, "env_timeout_s": 10}


def module_file(path: str) -> str:
    """The file behind a verifier path in verl's custom_reward_function convention (``pkg://package.module``,
    ``file://PATH`` or ``PATH``)."""
    module = pkg_module(path)
    if module is None:
        return path.removeprefix("file://")
    import importlib.util

    spec = importlib.util.find_spec(module)
    return spec.origin if spec and spec.origin else path


def policy_tokenizer(config) -> str:
    """:func:`drift_verl.core.identity.tokenizer_identity` of the policy a config trains."""
    model = config.actor_rollout_ref.model
    return tokenizer_identity(str(model.get("tokenizer_path") or model.path), model.get("custom_chat_template"))


def agent_loop(config) -> str:
    """The agent loop a job rolls out with (verl's ``rollout.agent.default_agent_loop``)."""
    return str(OmegaConf.select(config, "actor_rollout_ref.rollout.agent.default_agent_loop", default=FEEDBACK_LOOP))


def rollout_spec(config, drift: DriftConfig, reference, round_index: int) -> dict:
    """Everything that shapes a round's rollouts, for the store's fingerprint: the reference policy (``reference``:
    its content, or the checkpoint that ended the previous round), its tokenizer, the data's content, N, sampling,
    lengths, the environment (its settings and the verifier's file) and another agent loop than drift_feedback
    (its name and tool files); not beta/gamma, and no file paths, so a copied model or data file finds the same
    store and a retrained one at the same path a new one."""
    rollout = config.actor_rollout_ref.rollout
    train_files = config.data.train_files
    train_files = [train_files] if isinstance(train_files, str) else list(train_files)
    verifier = OmegaConf.to_container(config.reward.custom_reward_function, resolve=True)
    env = dataclasses.asdict(drift.env)
    env.pop("verifier_workers")  # how many processes verify does not change a verdict
    for key, default in ENV_ADDED.items():  # keys added after stores were made: at their defaults, the same identity
        if env[key] == default:
            del env[key]
    if drift.env.name not in BUILT_IN:  # a user's environment: its code, as the verifier's
        env["code"] = content_identity(module_file("pkg://" + drift.env.name.removeprefix("pkg://").partition(":")[0]))
    loop = agent_loop(config)
    spec = {
        "reference": reference,
        "tokenizer": policy_tokenizer(config),
        "data": [content_identity(str(f)) for f in train_files],
        # which of the files' prompts verl picks (data.train_max_samples draws a subset with data.seed when shuffling)
        "prompts": {key: config.data.get(key) for key in ("train_max_samples", "shuffle", "seed")},
        "n": rollout.n,
        "sampling": {k: rollout.get(k) for k in ("temperature", "top_p", "top_k", "dtype")},
        "lengths": [config.data.max_prompt_length, config.data.max_response_length],
        "env": env,
        "verifier": {**verifier, "path": content_identity(module_file(verifier["path"])) if verifier.get("path") else None},
        "round": round_index,
    }
    if loop != FEEDBACK_LOOP:  # another agent loop's trajectories (absent at the default: the same identities)
        multi_turn = rollout.get("multi_turn") or {}
        tools = [multi_turn.get(key) for key in ("tool_config_path", "function_tool_path")]
        spec["agent_loop"] = {"name": loop, "tools": [content_identity(str(t)) for t in tools if t]}
    return spec


def open_for_training(folder: str | Path, config) -> TrajectoryStore:
    """A store made elsewhere (``drift.store``), refused unless the policy ``config`` trains tokenises as it does:
    its token ids are trained as they are."""
    store = TrajectoryStore.open(folder)
    policy, made_with = policy_tokenizer(config), store.spec.get("tokenizer")
    if made_with != policy:
        model = config.actor_rollout_ref.model
        raise StoreError(f"{store.dir / 'manifest.json'}: the store was tokenised with another tokenizer or chat "
                         f"template (identity {made_with}) than the policy's, {model.get('tokenizer_path') or model.path}"
                         f" (identity {policy}); its token ids would be wrong for this policy. Train a policy with "
                         "the store's tokenizer, or roll out (or import) the store again with this one")
    lengths = [int(config.data.max_prompt_length), int(config.data.max_response_length)]
    made = store.spec.get("lengths") or lengths
    if any(int(m) > n for m, n in zip(made, lengths)):
        raise StoreError(f"{store.dir / 'manifest.json'}: made with data.max_prompt_length/max_response_length "
                         f"{made}, longer than this configuration's {lengths}: its trajectories would be cut. Set "
                         "them at least as long as the store's")
    return store


def first_round_spec(config, drift: DriftConfig) -> dict:
    """The spec of round 0's store: rolled out by the reference policy the config names (later rounds' reference is
    a checkpoint of the run, :meth:`drift_verl.integration.training.trainer.DriftTrainer._store`)."""
    return rollout_spec(config, drift, content_identity(config.actor_rollout_ref.model.path), 0)


def require_finished(store: TrajectoryStore, phases: list[str]) -> None:
    """``drift.phases=[weights,update]`` trains from a finished store: else :class:`StoreError` saying what to run."""
    missing = store.missing_shards()
    if missing:
        raise StoreError(f"{store.dir}: {len(missing)} shard(s) missing; drift.phases=[{','.join(phases)}] trains "
                         "from a finished store: run drift.phases=[rollouts] (or all phases) with this configuration first, "
                         "or point drift.store at a finished store")


def check_own_store(config, drift: DriftConfig) -> None:
    """The first round's store this configuration rolls out into (or trains from), if an earlier run made it: a
    readable manifest and readable shards of the right size (and all of them for a train-only job), else
    :class:`StoreError` naming the file. Run in the driver (``python -m drift_verl.main``), so that a damaged store
    ends the job in seconds, before Ray and vLLM start; the trainer checks again in every entry point."""
    folder = Path(drift.store_dir) / fingerprint(first_round_spec(config, drift))
    if (folder / "manifest.json").exists():
        store = TrajectoryStore.open(folder)
        if not drift.rolls_out or store.schema_version != SCHEMA_VERSION:  # an older store is read, not completed
            require_finished(store, drift.phases)
        store.verify(int(config.actor_rollout_ref.rollout.n), written_only=drift.rolls_out)
