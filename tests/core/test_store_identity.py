"""A store's content identity, and a damaged store is never trained on."""

import json

import pytest

from drift_verl.core.identity import content_identity
from drift_verl.core.store import StoreError, TrajectoryStore
from tests.core.rows import store_row as _row


@pytest.fixture(autouse=True)
def _own_hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFT_VERL_CACHE", str(tmp_path / "cache"))


def test_a_big_file_is_hashed_once(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 4096)
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
