"""The embedded default task: data generator, demonstrations, verifier, and the warm-started reference policy."""

import json
from pathlib import Path

import pandas as pd
import pytest

from drift_verl.tiny import assets
from drift_verl.tiny import task as tiny_task
from drift_verl.core.answers import extract_answer_tag
from reward_fns.exact import compute_score


def test_a_thousand_distinct_problems_split_into_disjoint_deterministic_sets():
    train, val = tiny_task.split_problems(128)
    assert (train, val) == tiny_task.split_problems(128)
    assert len(set(train)) == len(train) == 872 and len(set(val)) == len(val) == 128 and not set(train) & set(val)
    questions = {tiny_task.question(p) for p in train + val}
    assert len(questions) == 1000  # distinct prompts, not rephrasings of the same problem
    assert all(tiny_task.operands(tiny_task.question(p)) == p for p in val)
    sums = [sum(p) for p in val]  # the held-out set spans easy and hard sums
    assert min(sums) <= 5 and max(sums) >= 22


def test_parquet_files_are_in_verl_schema_and_verified_by_the_reward_fn():
    for path, split, size in ((assets.tiny_train(), "train", 872), (assets.tiny_val(), "val", assets.NUM_VAL)):
        frame = pd.read_parquet(path)
        assert len(frame) == size and frame["extra_info"].map(lambda e: e["split"]).eq(split).all()
        for row in frame.itertuples():
            answer = sum(tiny_task.operands(row.prompt[-1]["content"]))
            truth = row.reward_model["ground_truth"]
            assert truth == str(answer)
            assert compute_score(row.data_source, f"so <answer>{answer}</answer>", truth) == 1.0
            assert compute_score(row.data_source, f"<answer>{answer + 1}</answer>", truth) == 0.0
            assert compute_score(row.data_source, str(answer), truth) == 0.0  # no tags: no parseable answer


def test_every_answer_and_near_miss_is_one_token():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(assets.tiny_model())
    for value in range(tiny_task.MAX_SUM + 4):
        assert len(tokenizer.encode(f"<answer>{value}</answer>", add_special_tokens=False)) == 3


def test_demonstrations_are_noisy_multi_turn_and_end_at_the_first_correct_answer():
    rows = tiny_task.demonstration_rows(2000, seed=5)
    assert rows == tiny_task.demonstration_rows(2000, seed=5)
    first_right, repeats, retries = 0, 0, 0
    for row in rows:
        messages = row["messages"]
        answer = str(sum(tiny_task.operands(messages[1]["content"])))
        turns = [m["content"] for m in messages if m["role"] == "assistant"]
        answers = [extract_answer_tag(t) for t in turns]
        assert all(m["content"] == tiny_task.FEEDBACK for m in messages[3::2])  # feedback between answers
        assert messages[-1]["role"] == "assistant"
        assert all(given != answer for given in answers[:-1])  # stops at the first correct answer
        first_right += answers[0] == answer
        for t in range(1, len(answers)):
            retries += 1
            repeats += answers[t] is not None and answers[t] in answers[:t]
    demonstrator = tiny_task.Demonstrator()
    assert abs(first_right / len(rows) - demonstrator.first_correct * (1 - demonstrator.untagged)) < 0.04
    assert 0.15 < repeats / retries < 0.45  # room for DRIFT's repetition penalty


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_reference_warm_start_runs_verl_sft_and_exports_a_model(tmp_path, tiny_model_path):
    """verl's SFT trainer (torchrun, cpu platform) on the demonstrations, shortened to a few steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from drift_verl.tiny.reference import build_reference

    out = tmp_path / "reference"
    path = build_reference(out, tiny_model_path, num_demos=256, sft={"trainer.total_epochs": 1})
    meta = json.loads((Path(path) / "drift_reference.json").read_text())
    assert meta["base_model"] == tiny_model_path and meta["num_demos"] == 256
    assert not out.with_name("reference.build").exists()  # the build folder is removed once exported
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert len(tokenizer) == model.config.vocab_size
    changed = [n for n, p in model.named_parameters() if not p.detach().equal(base.get_parameter(n).detach())]
    assert changed  # trained, not copied
    assert build_reference(out, tiny_model_path) == path  # cached: a second call does not train again
