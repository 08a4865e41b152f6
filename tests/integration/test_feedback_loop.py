"""The feedback agent loop's turn logic, in process: verl's real AgentLoopBase and token merging with the tiny
tokenizer, a scripted rollout server instead of vLLM, the real verifier workers."""

import json
import time

import pytest

from drift_verl.core.environment import HigherLower
from drift_verl.core.weights import FORMAT_PENALTY
from tests.core.rows import paper_return
from tests.conftest import REPO
from tests.integration.loop_harness import run_loop as _run

pytestmark = pytest.mark.timeout(120)


def test_wrong_answers_get_feedback_until_the_first_correct_one(tiny_model_path):
    output, server, tokenizer = _run(tiny_model_path, ["<answer>6</answer>", "no idea", "<answer>7</answer>",
                                                       "<answer>9</answer>"])
    extra = output.extra_fields
    assert extra["turn_rewards"] == [0.0, 0.0, 1.0] and extra["t_star"] == 3  # stops at turn t*: 4th never asked
    assert extra["answers"] == ["6", None, "7"] and len(server.requests) == 3
    assert extra["format_penalty"] == pytest.approx(FORMAT_PENALTY)
    assert output.reward_score == pytest.approx(paper_return([0, 0, 1], FORMAT_PENALTY, ["6", "7"], 0.9, 0.5))
    mask, response = output.response_mask, output.response_ids
    spans = extra["turn_spans"]
    assert len(spans) == 3 and spans[-1][1] == len(mask) == len(response)
    assert all(all(mask[a:b]) for a, b in spans)  # every assistant token trainable...
    feedback = [i for i in range(len(mask)) if not any(a <= i < b for a, b in spans)]
    assert feedback and not any(mask[i] for i in feedback)  # ...the environment's feedback is not
    assert "Incorrect. Please think again." in tokenizer.decode([response[i] for i in feedback])
    assert tokenizer.decode(response[spans[2][0]:spans[2][1]]).startswith("<answer>7</answer>")
    # each turn's request holds the whole conversation so far: the previous request + answer + feedback
    assert server.requests[1][0][:len(server.requests[0][0])] == server.requests[0][0]
    # verl's rm_scores: each turn's share of the return at that turn's last token, summing to the return
    scores = output.as_dict()["rm_scores"]
    assert scores.nonzero().flatten().tolist() == [end - 1 for _, end in spans[1:]]  # turn 1's share is 0
    assert scores[spans[1][1] - 1].item() == pytest.approx(FORMAT_PENALTY)  # turn 2: no parseable answer
    assert scores[spans[2][1] - 1].item() == pytest.approx(0.9**2)  # turn 3: solved, discounted
    assert scores.sum().item() == pytest.approx(output.reward_score)
    assert "turn_credit" not in output.as_dict()


def test_the_last_turn_ends_the_trajectory_and_the_token_budget_is_shared(tiny_model_path):
    output, server, _ = _run(tiny_model_path, ["<answer>1</answer>", "<answer>1</answer>", "<answer>2</answer>"],
                             "drift.env.max_turns=3", "drift.env.turn_max_tokens=10")
    extra = output.extra_fields
    assert extra["turn_rewards"] == [0.0, 0.0, 0.0] and extra["t_star"] == 0
    assert output.reward_score == pytest.approx(-0.5 * (1 - 2 / 3))  # repeated rejected answer
    assert [params["max_tokens"] for _, params in server.requests] == [10, 10, 10]
    budget = len(output.response_mask)
    assert budget <= 192 and extra["turn_spans"][-1][1] == budget  # no dangling feedback after the last answer


def test_an_informative_environment_says_which_way_each_answer_is_off(tiny_model_path):
    output, server, tokenizer = _run(tiny_model_path, ["<answer>5</answer>", "<answer>9</answer>", "<answer>7</answer>"],
                                     "drift.env.name=higher_lower")
    extra = output.extra_fields
    assert extra["turn_rewards"] == [0.0, 0.0, 1.0] and extra["environment_failure"] == ""
    said = [m["content"] for m in json.loads(extra["messages"]) if m["role"] == "user"][1:]
    assert said == [HigherLower.DEFAULTS["low"], HigherLower.DEFAULTS["high"]]
    assert HigherLower.DEFAULTS["low"] in tokenizer.decode(server.requests[1][0])  # what the policy saw


class Opening:
    def __init__(self, config):
        pass

    def reset(self, row):
        return f"Hint: the answer has {len(row['ground_truth'])} digit."

    def step(self, text, answer, reward, turn):
        return None  # ends the conversation after the first wrong answer


class Raises(Opening):
    def step(self, text, answer, reward, turn):
        raise KeyError("state")


class Hangs(Opening):
    def step(self, text, answer, reward, turn):
        time.sleep(30)


class Garbage(Opening):
    def step(self, text, answer, reward, turn):
        return 3


class BrokenAtReset(Opening):
    def reset(self, row):
        raise RuntimeError("no such task")


def _env(name: str) -> str:
    return f"drift.env.name='pkg://{__name__}:{name}'"


def test_an_environment_opens_the_conversation_and_may_end_it(tiny_model_path):
    output, server, tokenizer = _run(tiny_model_path, ["<answer>5</answer>", "<answer>7</answer>"], _env("Opening"))
    extra = output.extra_fields
    assert extra["turn_rewards"] == [0.0] and len(server.requests) == 1 and extra["environment_failure"] == ""
    assert "Hint: the answer has 1 digit." in tokenizer.decode(server.requests[0][0])  # in the prompt, not trained
    assert len(output.response_ids) == extra["turn_spans"][-1][1]  # no feedback after the last answer


@pytest.mark.parametrize("name, failure", [
    ("Raises", "Raises.step raised KeyError: 'state'"),
    ("Hangs", "Hangs.step: no answer within 0.5 s (drift.env.env_timeout_s)"),
    ("Garbage", "Garbage.step: returned 3, not a string or None"),
])
def test_an_environment_that_breaks_its_contract_ends_its_trajectory_only(tiny_model_path, name, failure):
    start = time.monotonic()
    output, server, _ = _run(tiny_model_path, ["<answer>5</answer>", "<answer>7</answer>"], _env(name),
                             "drift.env.env_timeout_s=0.5")
    extra = output.extra_fields
    assert time.monotonic() - start < 25  # the hanging call (30 s) is not waited for
    assert extra["turn_rewards"] == [0.0] and len(server.requests) == 1  # the trajectory keeps its first turn
    assert extra["environment_failure"].endswith(failure), extra["environment_failure"]
    assert extra["reward_extra_info"]["environment_failures"] == 1.0


def test_an_environment_that_fails_before_the_first_answer_still_leaves_one_turn(tiny_model_path):
    output, server, tokenizer = _run(tiny_model_path, ["<answer>5</answer>", "<answer>7</answer>"],
                                     _env("BrokenAtReset"))
    extra = output.extra_fields
    assert extra["turn_rewards"] == [0.0] and len(server.requests) == 1 and len(extra["turn_spans"]) == 1
    assert extra["environment_failure"].endswith("BrokenAtReset.reset raised RuntimeError: no such task")
    assert "Hint" not in tokenizer.decode(server.requests[0][0])


def test_a_graded_verifiers_near_miss_goes_on_and_counts_once(tiny_model_path):
    """reward_fns.distance: a near answer scores below 1, so the conversation goes on (solved means exact) and
    the return holds drift.partial_credit x the best near-miss, once."""
    output, server, _ = _run(tiny_model_path, ["<answer>6</answer>", "<answer>9</answer>"], "drift.env.max_turns=2",
                             "drift.partial_credit=0.5",
                             f"reward.custom_reward_function.path={REPO / 'reward_fns' / 'distance.py'}")
    extra = output.extra_fields
    assert extra["turn_rewards"] == pytest.approx([1 - 1 / 7, 1 - 2 / 7]) and extra["t_star"] == 0
    assert len(server.requests) == 2
    assert output.reward_score == pytest.approx(0.5 * (1 - 1 / 7))
