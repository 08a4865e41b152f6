"""scripts/non_repeat.py: the fixed turn-2 contexts it takes from a store, and what it counts."""

import importlib.util

import pytest

from drift_verl.core.store import TrajectoryStore
from tests.conftest import REPO
from tests.core.rows import store_row

spec = importlib.util.spec_from_file_location("non_repeat", REPO / "scripts" / "non_repeat.py")
non_repeat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(non_repeat)


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
