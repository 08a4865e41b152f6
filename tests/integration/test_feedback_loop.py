"""The feedback agent loop's turn logic, in process: verl's real AgentLoopBase and token merging with the tiny
tokenizer, a scripted rollout server instead of vLLM, the real verifier workers."""

import pytest

from drift_verl.core.weights import FORMAT_PENALTY
from tests.core.rows import paper_return
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
