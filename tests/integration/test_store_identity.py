"""A store's identity is the content of what made it (not paths), read from a verl job's configuration; the
identity of stores made before stays what it was."""

import shutil

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import save_file

from drift_verl.core.config import DriftConfig
from drift_verl.core.identity import content_identity
from drift_verl.core.store import StoreError, TrajectoryStore, fingerprint
from drift_verl.integration.training.store_identity import check_own_store, open_for_training, rollout_spec
from tests.core.rows import store_row


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFT_VERL_CACHE", str(tmp_path / "cache"))


def _model(folder, seed: int):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.randn(4, 4, generator=torch.Generator().manual_seed(seed))}, folder / "model.safetensors")
    (folder / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    return folder


def _config(model, data, *overrides, **env):
    with initialize_config_module(config_module="recipes", version_base=None):
        config = compose(config_name="drift_main", overrides=[
            "recipe=drift", f"actor_rollout_ref.model.path={model}", f"data.train_files={data}",
            *(f"drift.env.{key}={value}" for key, value in env.items()), *overrides])
    return config


def _spec(config, reference):
    """Round 0's spec of a composed config, its drift: section parsed as the trainer parses it."""
    return rollout_spec(config, DriftConfig.from_section(config.drift), reference, 0)


def _data_and_model(tmp_path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"PAR1 some rows PAR1")
    return data, _model(tmp_path / "model", seed=0)


def _store_dir(tmp_path, model, data, **env) -> str:
    spec = _spec(_config(model, data, **env), content_identity(str(model)))
    return TrajectoryStore(tmp_path / "stores", spec, num_prompts=2, prompts_per_shard=1).dir.name


def test_store_follows_content_not_paths(tmp_path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"PAR1 some rows PAR1")
    model = _model(tmp_path / "model", seed=0)
    first = _store_dir(tmp_path, model, data)
    assert _store_dir(tmp_path, model, data) == first  # the same run again: the same store
    _model(tmp_path / "model", seed=1)  # retrained: same path, same shapes, other weights
    retrained = _store_dir(tmp_path, model, data)
    assert retrained != first
    copy = shutil.copytree(model, tmp_path / "elsewhere" / "model_copy")
    data_copy = shutil.copy(data, tmp_path / "elsewhere" / "train_copy.parquet")
    assert _store_dir(tmp_path, copy, data_copy) == retrained  # the same weights and data, copied
    (model / "tokenizer_config.json").write_text('{"chat_template": "another"}')
    assert _store_dir(tmp_path, model, data) != retrained  # the chat template shapes the prompts
    data.write_bytes(b"PAR1 other rows PAR1")
    assert _store_dir(tmp_path, copy, data) != retrained
    assert _store_dir(tmp_path, copy, data_copy, max_turns=3) != retrained  # the environment


def test_a_store_is_trained_only_by_a_policy_that_tokenises_as_it_does(tmp_path):
    data, model = _data_and_model(tmp_path)
    store = TrajectoryStore(tmp_path / "stores", _spec(_config(model, data), "reference"), 2, 1)
    # another policy (other weights, copied elsewhere) with the same tokenizer files trains from it
    other = _model(tmp_path / "other", seed=3)
    assert open_for_training(store.dir, _config(other, data)).dir == store.dir
    (other / "tokenizer_config.json").write_text('{"chat_template": "{{ other }}"}')
    with pytest.raises(StoreError, match=r"manifest.json: the store was tokenised with another tokenizer or chat "
                                         r"template .*other"):
        open_for_training(store.dir, _config(other, data))
    custom = _config(model, data, "+actor_rollout_ref.model.custom_chat_template='{{ x }}'")
    with pytest.raises(StoreError, match="tokenised with another"):  # a custom chat template counts too
        open_for_training(store.dir, custom)


def test_which_prompts_verl_picks_is_part_of_the_store(tmp_path):
    data, model = _data_and_model(tmp_path)
    names = set()
    for overrides in ([], ["data.seed=1"], ["data.train_max_samples=8"]):
        config = _config(model, data, *overrides)
        names.add(TrajectoryStore(tmp_path / "stores", _spec(config, "reference"), 2, 1).dir.name)
    assert len(names) == 3  # another subset of the data file is another store


def test_a_store_longer_than_the_configured_lengths_is_refused(tmp_path):
    data, model = _data_and_model(tmp_path)
    store = TrajectoryStore(tmp_path / "stores", _spec(_config(model, data), "reference"), 2, 1)
    shorter = _config(model, data, "data.max_response_length=64")
    with pytest.raises(StoreError, match=r"manifest.json: made with data.max_prompt_length/max_response_length "
                                         r"\[96, 192\], longer than this configuration's \[96, 64\]"):
        open_for_training(store.dir, shorter)


def test_the_driver_finds_a_damaged_store_of_an_earlier_run(tmp_path):
    """What ``python -m drift_verl.main`` checks before Ray starts: the store this configuration rolls out into, as
    far as an earlier run wrote it (missing shards are resumed), or the whole store to train from."""
    data, model = _data_and_model(tmp_path)
    config = _config(model, data, f"drift.store_dir={tmp_path / 'stores'}", "actor_rollout_ref.rollout.n=2")
    drift = DriftConfig.from_section(config.drift)
    check_own_store(config, drift)  # no store yet
    store = TrajectoryStore(tmp_path / "stores", _spec(config, content_identity(str(model))), 2, 1)
    store.write_shard(0, [store_row("a", 0, [1.0], ["7"]), store_row("a", 1, [0.0], ["6"])])
    check_own_store(config, drift)  # half written: the job will roll out the rest
    trains_only = _config(model, data, f"drift.store_dir={tmp_path / 'stores'}", "actor_rollout_ref.rollout.n=2",
                          "drift.phases=[weights,update]")
    with pytest.raises(StoreError, match=r"1 shard\(s\) missing; drift.phases=\[weights,update\] trains from a "
                                         r"finished store: run drift.phases=\[rollouts\]"):
        check_own_store(trains_only, DriftConfig.from_section(trains_only.drift))
    store.shard_path(0).write_bytes(store.shard_path(0).read_bytes()[:60])
    with pytest.raises(StoreError, match=f"{store.shard_path(0)}: not a readable parquet shard"):
        check_own_store(config, drift)
    (store.dir / "manifest.json").write_text('{"spec": {')
    with pytest.raises(StoreError, match=f"{store.dir / 'manifest.json'}: not a readable manifest .*; restore it, "
                                         f"or remove the folder {store.dir} to roll out anew"):
        check_own_store(config, drift)


def test_how_the_store_is_weighted_is_not_part_of_it(tmp_path):
    """beta, the weighting, its normalisation (``store``, alias ``batch``) and the loss normaliser act after the
    rollouts: a sweep over them trains from the same store."""
    data, model = _data_and_model(tmp_path)
    names = {TrajectoryStore(tmp_path / "stores", _spec(_config(model, data, *overrides), "reference"), 2,
                             1).dir.name
             for overrides in ([], ["drift.beta=0.5"], ["drift.normalization=store"], ["drift.normalization=batch"],
                               ["drift.loss_normalization=weight_sum"], ["drift.weighting=rejection"],
                               ["drift.weight_cap=2.0"])}
    assert len(names) == 1


def test_a_store_made_before_keeps_its_fingerprint(tmp_path):
    """The fingerprint of a fixed configuration, computed before ``drift:`` was typed (its defaults moved from YAML
    into drift_verl/core/config.py): a change that renames a store made before (``verifier_timeout_s: 10``
    becoming ``10.0``, a spec key added, moved or re-read) fails here instead of silently rolling out anew."""
    data = tmp_path / "train.parquet"
    data.write_bytes(b"PAR1 pinned rows PAR1")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"pinned weights")
    (model / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    verifier = tmp_path / "verifier.py"
    verifier.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n"
                        "    return 0.0\n")
    pinned = {(): "329bf67a6f609455", ("drift.env.verifier_timeout_s=10.0",): "d52de1614975dfb8"}
    for overrides, digest in pinned.items():
        # the tiny task's prompt subset of that time (the main job's settings have since raised it to 256)
        config = _config(model, data, f"reward.custom_reward_function.path={verifier}", "data.train_max_samples=64",
                         *overrides)
        assert fingerprint(_spec(config, content_identity(str(model)))) == digest, overrides


def test_the_environment_is_part_of_the_stores_identity(tmp_path, monkeypatch):
    """Its name, options and (a user's class) code; the defaults keep the identity of stores made before them."""
    data, model = _data_and_model(tmp_path)
    default = _store_dir(tmp_path, model, data)
    assert _store_dir(tmp_path, model, data, name="try_again", env_timeout_s=10) == default
    informative = _store_dir(tmp_path, model, data, name="higher_lower")
    assert informative != default
    with_options = _spec(_config(model, data, "drift.env.name=higher_lower", "+drift.env.options.high=Lower."),
                         "reference")
    assert with_options["env"]["options"] == {"high": "Lower."}
    package = tmp_path / "user_envs"
    package.mkdir()
    source = package / "hints.py"
    source.write_text("class Hints:\n    def reset(self, row): return None\n    def step(self, *args): return 'No.'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    user = _spec(_config(model, data, "drift.env.name='pkg://user_envs.hints:Hints'"), "reference")
    source.write_text(source.read_text() + "# changed\n")
    changed = _spec(_config(model, data, "drift.env.name='pkg://user_envs.hints:Hints'"), "reference")
    assert user["env"]["code"] != changed["env"]["code"]


def test_another_agent_loop_and_its_tools_are_part_of_the_stores_identity(tmp_path):
    """drift_feedback (the default) keeps the identity of stores made before; verl's single_turn_agent or
    tool_agent makes another store, and a tool file's content another again."""
    data, model = _data_and_model(tmp_path)
    loop = "actor_rollout_ref.rollout.agent.default_agent_loop"
    default = _spec(_config(model, data), "reference")
    assert "agent_loop" not in default and _spec(_config(model, data, f"{loop}=drift_feedback"), "reference") == default
    single = _spec(_config(model, data, f"{loop}=single_turn_agent"), "reference")
    assert single["agent_loop"] == {"name": "single_turn_agent", "tools": []}
    tool = tmp_path / "tools.py"
    tool.write_text("# a tool\n")
    with_tool = [f"{loop}=tool_agent", f"actor_rollout_ref.rollout.multi_turn.function_tool_path={tool}"]
    before = _spec(_config(model, data, *with_tool), "reference")
    tool.write_text("# another tool\n")
    assert before["agent_loop"]["name"] == "tool_agent" and _spec(_config(model, data, *with_tool), "reference") != before
