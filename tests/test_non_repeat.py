"""drift_verl/eval/non_repeat.py (and scripts/non_repeat.py on it): the fixed turn-2 contexts it takes from a
store, and what it counts."""

import importlib.util
import json

import pytest

from drift_verl.core.store import TrajectoryStore
from drift_verl.eval import non_repeat
from tests.conftest import REPO
from tests.core.rows import store_row


def _two_turns(prompt_id, sample, rewards, answers):
    row = store_row(prompt_id, sample, rewards, answers)
    # prompt [1, 2]; turn 1 = [10, 11], feedback [20, 21, 22], turn 2 = [12]
    return {**row, "response_ids": [10, 11, 20, 21, 22, 12], "response_mask": [1, 1, 0, 0, 0, 1],
            "turn_spans": [[0, 2], [5, 6]][:len(rewards)]}


def test_contexts_are_the_wrong_parseable_first_answers_cut_before_turn_two(tmp_path):
    store = TrajectoryStore(tmp_path, {"n": 2}, num_prompts=2, prompts_per_shard=2)
    store.write_shard(0, [_two_turns("a", 0, [0.0, 1.0], ["6", "7"]), _two_turns("a", 1, [1.0], ["7"]),
                          _two_turns("b", 0, [0.0, 0.0], [None, "5"]), _two_turns("b", 1, [0.0, 0.0], ["4", "4"])])
    contexts = non_repeat.fixed_contexts(store, limit=10)
    assert contexts == [{"ids": [1, 2, 10, 11, 20, 21, 22], "first": "6", "truth": "7"},
                        {"ids": [1, 2, 10, 11, 20, 21, 22], "first": "4", "truth": "7"}]
    assert len(non_repeat.fixed_contexts(store, limit=1)) == 1


def test_measure_counts_repeats_of_the_rejected_answer_among_parseable_ones():
    contexts = [{"ids": [], "first": "6", "truth": "7"}, {"ids": [], "first": "4", "truth": "7"}]
    result = non_repeat.measure(contexts, ["6", "7", None, "5"], samples=2)  # 2 samples per context
    assert result == {"second_answers": 4, "parseable": pytest.approx(0.75), "non_repeat": pytest.approx(2 / 3),
                      "correct": pytest.approx(0.25)}


def test_a_policy_answers_the_contexts(tiny_model_path):
    contexts = [{"ids": [1, 2, 3], "first": "6", "truth": "7"}] * 3
    answers = non_repeat.second_answers(tiny_model_path, contexts, samples=2, max_new_tokens=4, seed=0, batch=4)
    assert len(answers) == 6 and all(a is None or isinstance(a, str) for a in answers)


def test_repeats_are_counted_per_context_over_all_its_samples():
    contexts = [{"ids": [], "first": "6", "truth": "7"}, {"ids": [], "first": "4", "truth": "7"}]
    assert non_repeat.repeats_by_context(contexts, ["6", "6", None, "4"], samples=2) == [1.0, 0.5]


def _wrong_first_answers(tmp_path):
    store = TrajectoryStore(tmp_path / "store", {"n": 2}, num_prompts=1, prompts_per_shard=1)
    store.write_shard(0, [_two_turns("a", 0, [0.0, 1.0], ["6", "7"]), _two_turns("a", 1, [0.0, 0.0], ["5", "5"])])
    return store


def test_a_policy_compared_with_itself_changes_nothing(tmp_path, tiny_model_path):
    result = non_repeat.compare(_wrong_first_answers(tmp_path), tiny_model_path, tiny_model_path, limit=8,
                                max_new_tokens=4)
    assert result["contexts"] == 2 and result["samples"] == non_repeat.SAMPLES
    assert result["before"] == result["after"] and result["change"] == 0 and result["ci"] == [0, 0]


def test_the_script_writes_each_policys_measures(tmp_path, tiny_model_path):
    spec = importlib.util.spec_from_file_location("non_repeat_script", REPO / "scripts" / "non_repeat.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    store, out = _wrong_first_answers(tmp_path), tmp_path / "out.json"
    assert script.main(["--store", str(store.dir), "--model", f"a={tiny_model_path}", "--samples", "2",
                        "--max-new-tokens", "4", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["contexts"] == 2 and set(written["models"]["a"]) == {"path", "second_answers", "parseable",
                                                                         "non_repeat", "correct"}
