"""``python -m drift_verl.store import``: trajectories made elsewhere become a store tokenised exactly as the feedback
agent loop makes one, and ``inspect`` on it gives the paper's weights."""

import json
import math
import random

import pyarrow.parquet as pq
import pytest

from drift_verl import store as cli
from drift_verl.core.store import TrajectoryStore
from drift_verl.tiny import task
from tests.core.rows import paper_return
from tests.integration.loop_harness import run_loop

pytestmark = pytest.mark.timeout(300)

TOKEN_FIELDS = ["prompt_ids", "response_ids", "response_mask", "turn_spans"]


def _reference_row(prompt_id, output) -> dict:
    """The loop's trajectory in the reference implementation's format."""
    extra = output.extra_fields
    return {"prompt_id": prompt_id, "turn_rewards": {f"t{i + 1}": r for i, r in enumerate(extra["turn_rewards"])},
            "answer_norms": extra["answers"], "format_penalty": extra["format_penalty"],
            "messages": json.loads(extra["messages"])}


def _write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _import(*args) -> int:
    return cli.main(["import", *map(str, args)])


def _store_table(capsys):
    """The store a successful import printed, as one table."""
    printed = capsys.readouterr()
    folder = next(line for line in printed.out.splitlines() if line.startswith("imported")).split(" into ")[1].split(";")[0]
    store = TrajectoryStore.open(folder)
    store.verify(int(store.spec["n"]))
    return store, printed.err


@pytest.mark.parametrize("mode", ["simple", "full"])
def test_an_imported_conversation_has_the_agent_loops_tokens_masks_and_spans(tiny_model_path, tmp_path, capsys, mode):
    """The same conversations, played by the loop (scripted answers) and imported from their messages."""
    scripts = {"solved-3rd": ["<answer>6</answer>", "no idea", "<answer>7</answer>"],
               "never": ["<answer>1</answer>", "<answer>1</answer>", "<answer>2</answer>", "x", "<answer>5</answer>"],
               "first": ["<answer>7</answer>"]}
    outputs = {name: run_loop(tiny_model_path, answers, f"drift.env.prompt_mode={mode}")[0]
               for name, answers in scripts.items()}
    source = _write_jsonl(tmp_path / "made_elsewhere.jsonl", [_reference_row(n, o) for n, o in outputs.items()])
    assert _import(source, "--model", tiny_model_path, "--out", tmp_path / "stores") == 0
    store, _ = _store_table(capsys)
    rows = {row["prompt_id"]: row for table in store.iter_columns(None) for row in table.to_pylist()}
    assert sorted(rows) == sorted(scripts)
    for name, output in outputs.items():
        loop = {"prompt_ids": output.prompt_ids, "response_ids": output.response_ids,
                "response_mask": output.response_mask, "turn_spans": output.extra_fields["turn_spans"]}
        assert {k: rows[name][k] for k in TOKEN_FIELDS} == loop, name
        assert rows[name]["t_star"] == output.extra_fields["t_star"]
        assert rows[name]["answers"] == output.extra_fields["answers"]
    longest = max(len(o.extra_fields["turn_rewards"]) for o in outputs.values())  # full mode's state blocks: fewer fit
    assert store.spec["n"] == 1 and store.spec["env"]["max_turns"] == longest


def _held_out_rows(prompts: int, samples: int, seed: int = 0) -> list[dict]:
    """Reference-format trajectories on the tiny task's held-out problems: random answers, feedback after each
    wrong one, up to 5 turns, some turns without a parseable answer."""
    rng = random.Random(seed)
    held_out = task.splits()["dev"]
    rows = []
    for problem in held_out[:prompts]:
        truth = str(sum(problem))
        for _ in range(samples):
            messages = [{"role": "system", "content": task.SYSTEM_PROMPT}, {"role": "user", "content": task.question(problem)}]
            rewards, answers = {}, []
            for turn in range(1, 6):
                guess = rng.choice([truth, str(rng.randint(0, task.MAX_SUM)), None])
                answers.append(guess)
                messages.append({"role": "assistant", "content": "hmm" if guess is None else f"<answer>{guess}</answer>"})
                rewards[f"t{turn}"] = float(guess == truth)
                if guess == truth or turn == 5:
                    break
                messages.append({"role": "user", "content": task.FEEDBACK})
            rows.append({"prompt_id": task.question(problem), "turn_rewards": rewards, "answer_norms": answers,
                         "format_penalty": -0.1 * answers.count(None), "messages": messages})
    return rows


def _formula(rows, beta, gamma=0.9):
    """w = exp(R/beta) / mean over the prompt's group of exp(R/beta), row by row."""
    returns = [paper_return(list(r["turn_rewards"].values()), r["format_penalty"], r["answer_norms"], gamma, 0.5)
               for r in rows]
    weights = []
    for i, row in enumerate(rows):
        group = [math.exp(returns[j] / beta) for j, other in enumerate(rows) if other["prompt_id"] == row["prompt_id"]]
        weights.append(math.exp(returns[i] / beta) / (sum(group) / len(group)))
    return returns, weights


def test_import_then_inspect_gives_the_formulas_weights_and_skips_bad_rows(tiny_model_path, tmp_path, capsys):
    good = _held_out_rows(prompts=6, samples=4)
    shuffled = good[:]
    random.Random(1).shuffle(shuffled)  # a prompt's trajectories need not be adjacent
    incomplete = _held_out_rows(prompts=7, samples=4)[-4:-1]  # the 7th problem with 3 trajectories, not 4
    bad = ["{not json", {**good[0], "turn_rewards": {"t1": "yes"}}, {k: v for k, v in good[1].items() if k != "messages"},
           {**good[2], "turn_rewards": {"t1": 0.0, "t2": 0.0, "t3": 0.0, "t4": 0.0, "t5": 0.0, "t6": 0.0}},
           {**good[3], "messages": [{"role": "assistant", "content": "<answer>1</answer>"}]}]
    source = _write_jsonl(tmp_path / "held_out.jsonl", shuffled[:5] + bad + shuffled[5:] + incomplete)
    assert _import(source, "--model", tiny_model_path, "--out", tmp_path / "stores", "--prompts-per-shard", 4) == 0
    store, err = _store_table(capsys)
    assert (store.num_prompts, store.spec["n"], store.num_shards) == (6, 4, 2)
    lines = {6: "field 'turn_rewards.t1'", 7: "field 'messages' must be", 8: "field 'turn_rewards' has 6 turns",
             9: "field 'messages'"}
    assert f"{source}:5: not valid JSON" not in err and f"{source}:6: not valid JSON" in err
    for line, field in lines.items():
        assert f"skipped: {source}:{line + 1}: {field}" in err, err
    assert "3 trajectories, not 4" in err
    # every good trajectory once, grouped by prompt in order of first appearance, samples in file order
    stored = [row for table in store.iter_columns(["prompt_id", "sample", "messages"]) for row in table.to_pylist()]
    order = list(dict.fromkeys(row["prompt_id"] for row in shuffled))
    expected = [row for prompt in order for row in shuffled if row["prompt_id"] == prompt]
    assert [(r["prompt_id"], json.loads(r["messages"])) for r in stored] == [(r["prompt_id"], r["messages"]) for r in expected]
    assert [r["sample"] for r in stored] == [0, 1, 2, 3] * 6

    weights_file = tmp_path / "weights.jsonl"
    assert cli.main(["inspect", str(store.dir), "--beta", "0.1", "--weights", str(weights_file),
                     "--plot", str(tmp_path / "w.png")]) == 0
    returns, weights = _formula(expected, 0.1)
    lines = [json.loads(line) for line in weights_file.read_text().splitlines()]
    assert [line["return"] for line in lines] == pytest.approx(returns)
    assert [line["weight"] for line in lines] == pytest.approx(weights)


def test_parquet_and_datasets_imports_equal_the_jsonl_one_and_a_rerun_fills_only_missing_shards(
        tiny_model_path, tmp_path, capsys):
    import datasets

    rows = _held_out_rows(prompts=4, samples=2, seed=3)
    jsonl = _write_jsonl(tmp_path / "t.jsonl", rows)
    as_lists = [{**row, "turn_rewards": list(row["turn_rewards"].values()), "messages": json.dumps(row["messages"])}
                for row in rows]  # parquet files hold turn rewards as a list and messages as JSON text
    parquet = tmp_path / "t.parquet"
    datasets.Dataset.from_list(as_lists).to_parquet(str(parquet))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "t_dataset"))
    tables = []
    for source in (jsonl, parquet, tmp_path / "t_dataset"):
        assert _import(source, "--model", tiny_model_path, "--out", tmp_path / "stores", "--prompts-per-shard", 2) == 0
        store, _ = _store_table(capsys)
        tables.append(pq.read_table(store.shard_path(0)).to_pylist() + pq.read_table(store.shard_path(1)).to_pylist())
    assert tables[0] == tables[1] == tables[2] and len(tables[0]) == 8

    # an interrupted import (a shard missing) re-run: the same store, only the missing shard written
    assert _import(jsonl, "--model", tiny_model_path, "--out", tmp_path / "stores", "--prompts-per-shard", 2) == 0
    store, _ = _store_table(capsys)
    kept, lost = store.shard_path(0), store.shard_path(1)
    before = (kept.stat().st_mtime_ns, lost.read_bytes())
    lost.unlink()
    assert _import(jsonl, "--model", tiny_model_path, "--out", tmp_path / "stores", "--prompts-per-shard", 2) == 0
    assert kept.stat().st_mtime_ns == before[0] and lost.read_bytes() == before[1]
    assert not list((tmp_path / "stores").glob(".import-staging-*"))


def test_nothing_importable_is_an_error(tiny_model_path, tmp_path, capsys):
    source = _write_jsonl(tmp_path / "bad.jsonl", ['{"prompt_id": "p"}'])
    assert _import(source, "--model", tiny_model_path, "--out", tmp_path / "stores") == 2
    err = capsys.readouterr().err
    assert f"{source}:1: missing field 'turn_rewards'" in err and "nothing to import" in err
