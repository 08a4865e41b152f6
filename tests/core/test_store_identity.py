"""The store's identity is the content of what made it (not paths), and a damaged store is never trained on."""

import json
import shutil

import pytest
import torch
from hydra import compose, initialize_config_module
from safetensors.torch import save_file

from drift_verl.core.store import StoreError, TrajectoryStore, content_identity, rollout_spec
from tests.core.rows import store_row as _row


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


def _data_and_model(tmp_path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"PAR1 some rows PAR1")
    return data, _model(tmp_path / "model", seed=0)


def _store_dir(tmp_path, model, data, **env) -> str:
    spec = rollout_spec(_config(model, data, **env), content_identity(str(model)), 0)
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


def test_a_big_file_is_hashed_once(tmp_path, monkeypatch):
    model = _model(tmp_path / "model", seed=0)
    first = content_identity(str(model))
    reads = []
    original = open

    def counting_open(path, *args, **kwargs):
        reads.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert content_identity(str(model)) == first
    assert not [p for p in reads if p.endswith("model.safetensors")]  # cached by (path, size, mtime)


def _full_store(tmp_path) -> TrajectoryStore:
    store = TrajectoryStore(tmp_path / "s", {"n": 2}, num_prompts=2, prompts_per_shard=1)
    for shard, prompt in enumerate("ab"):
        store.write_shard(shard, [_row(prompt, 0, [1.0], ["7"]), _row(prompt, 1, [0.0], ["6"])])
    store.verify(2)
    return store


@pytest.mark.parametrize("damage, message", [
    (lambda store: store.shard_path(1).unlink(), "shard-00001.parquet: missing"),
    (lambda store: store.shard_path(0).write_bytes(store.shard_path(0).read_bytes()[:40]),
     "shard-00000.parquet: not a readable parquet shard"),
    (lambda store: store.shard_path(1).write_bytes(b"\x00garbage" * 64), "shard-00001.parquet: not a readable"),
    (lambda store: store.write_shard(1, [_row("b", 0, [1.0], ["7"])]), "shard-00001.parquet: expected 2 trajectories"),
])
def test_damaged_shards_are_named_with_what_to_do(tmp_path, damage, message):
    store = _full_store(tmp_path)
    damage(store)
    with pytest.raises(StoreError, match=message) as error:
        store.verify(2)
    assert "re-run the same command" in str(error.value)


@pytest.mark.parametrize("manifest, message", [
    (lambda text: text[: len(text) // 2], "not a readable manifest"),
    (lambda text: json.dumps({**json.loads(text), "spec": {"n": 3}}), "another configuration"),
    (lambda text: "[1, 2]", "another configuration"),
])
def test_a_truncated_or_foreign_manifest_is_refused(tmp_path, manifest, message):
    store = _full_store(tmp_path)
    path = store.dir / "manifest.json"
    path.write_text(manifest(path.read_text()))
    with pytest.raises(StoreError, match=message) as error:
        TrajectoryStore(tmp_path / "s", {"n": 2}, num_prompts=2, prompts_per_shard=1)
    assert str(path) in str(error.value) and "remove the folder" in str(error.value)


def test_a_store_is_trained_only_by_a_policy_that_tokenises_as_it_does(tmp_path):
    from drift_verl.core.store import open_for_training

    data, model = _data_and_model(tmp_path)
    store = TrajectoryStore(tmp_path / "stores", rollout_spec(_config(model, data), "reference", 0), 2, 1)
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
        names.add(TrajectoryStore(tmp_path / "stores", rollout_spec(config, "reference", 0), 2, 1).dir.name)
    assert len(names) == 3  # another subset of the data file is another store


def test_a_store_longer_than_the_configured_lengths_is_refused(tmp_path):
    from drift_verl.core.store import open_for_training

    data, model = _data_and_model(tmp_path)
    store = TrajectoryStore(tmp_path / "stores", rollout_spec(_config(model, data), "reference", 0), 2, 1)
    shorter = _config(model, data, "data.max_response_length=64")
    with pytest.raises(StoreError, match=r"manifest.json: made with data.max_prompt_length/max_response_length "
                                         r"\[96, 192\], longer than this configuration's \[96, 64\]"):
        open_for_training(store.dir, shorter)


def test_how_the_store_is_weighted_is_not_part_of_it(tmp_path):
    """beta, the weighting, its normalisation (``store``, alias ``batch``) and the loss normaliser act after the
    rollouts: a sweep over them trains from the same store."""
    data, model = _data_and_model(tmp_path)
    names = {TrajectoryStore(tmp_path / "stores", rollout_spec(_config(model, data, *overrides), "reference", 0), 2,
                             1).dir.name
             for overrides in ([], ["drift.beta=0.5"], ["drift.normalization=store"], ["drift.normalization=batch"],
                               ["drift.loss_normalization=weight_sum"], ["drift.weighting=rejection"],
                               ["drift.weight_cap=2.0"])}
    assert len(names) == 1
