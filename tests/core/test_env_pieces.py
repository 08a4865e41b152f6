"""Answer parsers, multi-turn metrics, the trajectory store (no Ray)."""

import pyarrow.parquet as pq
import pytest

from drift_verl.core.answers import extract_answer_tag, extract_boxed, extract_gsm8k, get_parser
from drift_verl.core.metrics import multi_turn_metrics
from drift_verl.core.store import StoreError, TrajectoryStore, returns_and_groups
from reward_fns.exact import compute_score
from tests.core.rows import store_row as _row


def test_parsers():
    assert extract_answer_tag("x <answer> 7 </answer> y <answer>8</answer>") == "8"
    assert extract_answer_tag("<answer>7") is None
    assert extract_boxed(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{unclosed") is None
    assert extract_gsm8k("... #### 1,234") == "1234"
    with pytest.raises(ValueError, match="answer format"):
        get_parser("latex")


def test_exact_reward_in_verl_signature():
    assert compute_score("d", "<answer> Paris </answer>", "paris") == 1.0
    assert compute_score("d", "<answer>Lyon</answer>", "paris") == 0.0
    assert compute_score("d", "Paris", "paris") == 0.0
    assert compute_score("d", r"\boxed{12}", "12", answer_format="boxed") == 1.0


def test_multi_turn_metrics_hand_computed():
    rewards = [[1.0], [0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    answers = [["7"], ["6", "7"], ["5", "5", None], ["1", "2", "3"]]
    m = multi_turn_metrics(rewards, answers, max_turns=3)
    assert m["solved_within_1"] == 0.25 and m["solved_within_2"] == 0.5 and m["solved_within_3"] == 0.75
    assert m["acc_at_turn_2"] == 0.25
    assert m["correction_rate_turn_2"] == pytest.approx(1 / 3)  # 3 unsolved after turn 1, one fixed at 2
    assert m["correction_rate_turn_3"] == pytest.approx(1 / 2)
    assert m["mean_turns_to_solve"] == pytest.approx((1 + 2 + 3) / 3)
    # answers after feedback: 7 (new), 5 (repeat), 2 and 3 (new): 3 of 4
    assert m["non_repeat_ratio"] == pytest.approx(3 / 4)
    assert m["format_failure_rate"] == pytest.approx(1 / 9)


def test_store_shards_resume_and_fingerprint(tmp_path):
    spec = {"reference": {"model.safetensors": 10}, "n": 2}
    store = TrajectoryStore(tmp_path, spec, num_prompts=3, prompts_per_shard=2)
    assert store.num_shards == 2 and list(store.shard_prompts(1)) == [2]
    assert store.missing_shards() == [0, 1]
    store.write_shard(0, [_row("a", 0, [1.0], ["7"]), _row("a", 1, [0.0, 1.0], ["6", "7"]),
                          _row("b", 0, [0.0], [None]), _row("b", 1, [0.0], ["5"])])
    again = TrajectoryStore(tmp_path, spec, num_prompts=3, prompts_per_shard=2)  # a restarted run
    assert again.dir == store.dir and again.missing_shards() == [1]
    assert not list(store.dir.glob("*.tmp*"))
    assert pq.read_table(store.shard_path(0)).num_rows == 4
    with pytest.raises(StoreError, match="another configuration"):
        TrajectoryStore(tmp_path, spec, num_prompts=4, prompts_per_shard=2)
    other = TrajectoryStore(tmp_path, {**spec, "n": 4}, num_prompts=3, prompts_per_shard=2)
    assert other.dir != store.dir  # another rollout config never mixes with this store
    again.write_shard(1, [_row("c", 0, [0.0, 0.0], ["1", "1"])])
    returns, groups, solved = returns_and_groups(again, gamma=0.9, repetition_coef=0.5)
    assert groups.tolist() == [0, 0, 1, 1, 2]  # one dense code per prompt id, in store order
    assert returns.tolist() == pytest.approx([1.0, 0.9, -0.1, 0.0, -0.25])
    assert solved.tolist() == [True, True, False, False, False]
