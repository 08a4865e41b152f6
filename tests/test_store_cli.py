"""``python -m drift_verl.store inspect``: a store's size, reference metrics and weights, without training."""

import json
import math

import pytest

from drift_verl import store as cli
from drift_verl.core.store import StoreError, TrajectoryStore
from tests.core.rows import paper_return, store_row

SPEC = {"n": 2, "env": {"max_turns": 5}}
ROWS = [  # (prompt, sample, turn rewards, answers)
    ("a", 0, [1.0], ["7"]), ("a", 1, [0.0, 1.0], ["6", "7"]),
    ("b", 0, [0.0, 0.0], [None, "5"]), ("b", 1, [0.0, 0.0, 0.0], ["5", "5", "4"]),
    ("c", 0, [0.0, 1.0], ["3", "9"]), ("c", 1, [1.0], ["9"]),
]


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """inspect writes its plot to the working directory unless --plot says where: keep it out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store(tmp_path):
    made = TrajectoryStore(tmp_path / "stores", SPEC, num_prompts=3, prompts_per_shard=2)
    made.write_shard(0, [store_row(*row) for row in ROWS[:4]])
    made.write_shard(1, [store_row(*row) for row in ROWS[4:]])
    return made


def _formula(beta, gamma=0.9):
    """The paper's weights, row by row: w = exp(R/beta) / mean over the prompt's group of exp(R/beta)."""
    returns = [paper_return(r, -0.1 * a.count(None), a, gamma, 0.5) for _, _, r, a in ROWS]
    weights = []
    for i, (prompt, *_) in enumerate(ROWS):
        group = [math.exp(returns[j] / beta) for j, row in enumerate(ROWS) if row[0] == prompt]
        weights.append(math.exp(returns[i] / beta) / (sum(group) / len(group)))
    return returns, weights


def test_inspect_reports_the_store_and_writes_the_formulas_weights(store, tmp_path, capsys):
    out, png = tmp_path / "weights.jsonl", tmp_path / "weights.png"
    assert cli.main(["inspect", str(store.dir), "--beta", "0.1", "--weights", str(out), "--plot", str(png),
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"] == {"trajectories": 6, "prompts": 3, "samples_per_prompt": 2, "shards": 2,
                              "generated_tokens": 12, "schema_version": 2, "broken_trajectories": 0,
                              "agent_loop": "drift_feedback", "absent_fields": []}
    assert report["reference"]["solved_within_1"] == pytest.approx(2 / 6)
    assert report["reference"]["solved_within_5"] == pytest.approx(4 / 6)
    (row,) = report["weights"]
    assert row["num_groups"] == 3 and row["all_fail_group_share"] == pytest.approx(1 / 3)
    returns, weights = _formula(0.1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["prompt_id"], line["sample"]) for line in lines] == [(p, s) for p, s, _, _ in ROWS]
    assert [line["return"] for line in lines] == pytest.approx(returns)
    assert [line["weight"] for line in lines] == pytest.approx(weights)
    assert row["max"] == pytest.approx(max(weights))
    assert png.stat().st_size > 0 and report["plot"] == str(png.resolve())


def test_a_beta_sweep_is_one_table(store, tmp_path, capsys):
    assert cli.main(["inspect", str(store.dir), "--beta", "0.05", "0.1", "1.0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["weights"]
    assert [row["beta"] for row in rows] == [0.05, 0.1, 1.0]
    ess = [row["ess_fraction_mean"] for row in rows]
    assert ess[0] < ess[1] < ess[2]  # a hotter beta spreads the weight over more trajectories
    assert cli.main(["inspect", str(store.dir), "--beta", "0.1"]) == 0  # the table, and a plot in the cwd
    assert "ESS frac" in capsys.readouterr().out and list(tmp_path.glob("weights_*.png"))


def test_store_normalisation_and_its_old_name(store, tmp_path, capsys):
    """``--normalization store``: one normaliser over the whole store (mean weight 1 over all six); ``batch`` is its
    old name and gives the same weights."""
    returns, _ = _formula(0.1)
    expected = [math.exp(r / 0.1) for r in returns]
    expected = [e / (sum(expected) / len(expected)) for e in expected]
    for name in ("store", "batch"):
        out = tmp_path / f"{name}.jsonl"
        assert cli.main(["inspect", str(store.dir), "--beta", "0.1", "--normalization", name, "--weights", str(out),
                         "--plot", str(tmp_path / f"{name}.png"), "--json"]) == 0
        capsys.readouterr()
        assert [json.loads(line)["weight"] for line in out.read_text().splitlines()] == pytest.approx(expected)
    assert (tmp_path / "store.jsonl").read_text() == (tmp_path / "batch.jsonl").read_text()


def test_bad_input_is_one_line_naming_the_file(store, tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path)]) == 2
    assert "manifest.json: missing" in capsys.readouterr().err
    assert cli.main(["inspect", str(store.dir), "--weights", str(store.shard_path(0))]) == 2
    assert "would overwrite" in capsys.readouterr().err
    manifest = store.dir / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"n": 2', '"n": 3'))
    assert cli.main(["inspect", str(store.dir)]) == 2
    assert "fingerprint" in capsys.readouterr().err
    store.shard_path(1).unlink()
    manifest.write_text(json.dumps({"spec": SPEC, "num_prompts": 3, "prompts_per_shard": 2, "schema_version": 2}))
    assert cli.main(["inspect", str(store.dir)]) == 2
    assert "shard-00001.parquet: missing" in capsys.readouterr().err


def test_shards_load_with_datasets(store):
    """The README's export recipe: the store's shards as a Hugging Face dataset, one row per trajectory."""
    from datasets import load_dataset

    files = sorted(str(path) for path in store.dir.glob("shard-*.parquet"))
    dataset = load_dataset("parquet", data_files=files, split="train", cache_dir=str(store.dir.parent / "hf"))
    assert [(row["prompt_id"], row["sample"]) for row in dataset] == [(p, s) for p, s, _, _ in ROWS]
    assert dataset[1]["turn_rewards"] == [0.0, 1.0] and dataset[2]["answers"] == [None, "5"]


def test_a_trajectory_the_environment_broke_weighs_zero_and_its_group_is_normalised_without_it(tmp_path, capsys):
    made = TrajectoryStore(tmp_path / "stores", SPEC, num_prompts=3, prompts_per_shard=2)
    rows = [store_row(*row) for row in ROWS]
    rows[1]["environment_failure"] = "pkg://envs:Hints.step raised KeyError: 'state'"
    made.write_shard(0, rows[:4])
    made.write_shard(1, rows[4:])
    out = tmp_path / "weights.jsonl"
    assert cli.main(["inspect", str(made.dir), "--beta", "0.1", "--weights", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"]["broken_trajectories"] == 1 and report["weights"][0]["broken_trajectories"] == 1
    weights = [json.loads(line)["weight"] for line in out.read_text().splitlines()]
    _, formula = _formula(0.1)
    assert weights[1] == 0 and weights[0] == pytest.approx(1.0)  # group "a": its one kept trajectory, mean 1
    assert weights[2:] == pytest.approx(formula[2:])  # the other groups as before


def test_a_store_of_schema_version_one_is_read_not_completed(store, tmp_path, capsys):
    """A store made before the environment_failure column (manifest without schema_version, shards without the
    column) is inspected and trained on as before; adding a shard to it is refused with what to do."""
    import pyarrow.parquet as pq

    from drift_verl.core.store import SCHEMAS

    manifest = store.dir / "manifest.json"
    old = {k: v for k, v in json.loads(manifest.read_text()).items() if k != "schema_version"}
    manifest.write_text(json.dumps(old))
    for index in range(store.num_shards):
        table = pq.read_table(store.shard_path(index)).drop(["environment_failure"])
        assert table.schema.equals(SCHEMAS[1])
        pq.write_table(table, store.shard_path(index))
    reopened = TrajectoryStore.open(store.dir)
    assert reopened.schema_version == 1
    assert cli.main(["inspect", str(store.dir), "--beta", "0.1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"]["schema_version"] == 1 and report["size"]["broken_trajectories"] == 0
    store.shard_path(1).unlink()
    with pytest.raises(StoreError, match="store schema version 1 .* not completed: 1 shard.* missing"):
        reopened.write_shard(1, [store_row(*row) for row in ROWS[4:]])
    manifest.write_text(json.dumps({**old, "schema_version": 9}))
    with pytest.raises(StoreError, match="store schema version 9, which this drift-verl does not read"):
        TrajectoryStore.open(store.dir)
