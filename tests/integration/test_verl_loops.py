"""DRIFT on verl's own agent loops: a trajectory of ``single_turn_agent`` or of ``tool_agent`` (with a function
tool) becomes a store row. verl's real loops with the tiny tokenizer and a scripted server; the reward lands in
``rm_scores`` as verl's agent-loop worker puts it (the whole score on the last response token)."""

import pytest
from verl.experimental.agent_loop.agent_loop import ToolListWrap
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
from verl.tools.tool_registry import load_all_tools

from drift_verl import store as cli
from drift_verl.core.store import (FEEDBACK_LOOP_ONLY, SCHEMA, TrajectoryStore, fields_without_the_feedback_loop,
                                   returns_and_groups)
from drift_verl.eval.non_repeat import fixed_contexts
from tests.conftest import FIXTURES
from tests.integration.loop_harness import run_loop

pytestmark = pytest.mark.timeout(120)
TOOL = FIXTURES / "calculator_tool.py"


def _row(output, score: float, prompt_id: str, sample: int) -> dict:
    """What the DRIFT trainer's collect() stores for one finished trajectory of another loop than drift_feedback."""
    output.reward_score = score  # verl's agent-loop worker sets it from the reward loop, then rm_scores from it
    record = output.as_dict()
    mask = record["response_mask"].tolist()
    return {"prompt_id": prompt_id, "sample": sample, "data_source": "tiny", "ground_truth": "7",
            "prompt_ids": record["prompts"].tolist(), "response_ids": record["responses"].tolist(),
            "response_mask": mask, **fields_without_the_feedback_loop(mask, record["rm_scores"].tolist())}


def test_a_single_turn_trajectory_is_one_turn_whose_return_is_its_reward(tiny_model_path, tmp_path, capsys):
    output, server, tokenizer = run_loop(tiny_model_path, ["<answer>7</answer>"], loop_class=SingleTurnAgentLoop)
    assert len(server.requests) == 1 and all(output.response_mask)
    solved = _row(output, 1.0, "p", 0)
    assert solved["turn_spans"] == [[0, len(output.response_ids)]]
    assert (solved["turn_rewards"], solved["t_star"], solved["answers"]) == ([1.0], 1, [])
    output, _, _ = run_loop(tiny_model_path, ["<answer>6</answer>"], loop_class=SingleTurnAgentLoop)
    failed = _row(output, 0.25, "p", 1)  # a graded reward: a near-miss, never solved
    assert (failed["turn_rewards"], failed["t_star"]) == ([0.25], 0)

    store = TrajectoryStore(tmp_path / "stores", {"n": 2, "env": {"max_turns": 5},
                                                   "agent_loop": {"name": "single_turn_agent", "tools": []}},
                            num_prompts=1, prompts_per_shard=1)
    store.write_shard(0, [solved, failed])
    assert store.agent_loop == "single_turn_agent" and store.absent_fields == FEEDBACK_LOOP_ONLY
    returns, groups, is_solved = returns_and_groups(store, gamma=0.9, repetition_coef=0.5)
    assert returns.tolist() == pytest.approx([1.0, 0.25]) and is_solved.tolist() == [True, False]  # R = the reward
    assert cli.main(["inspect", str(store.dir), "--beta", "0.1", "--plot", str(tmp_path / "w.png")]) == 0
    shown = capsys.readouterr().out
    assert "rolled out by agent loop single_turn_agent, which does not record: answers" in shown
    assert "solved 0.500" in shown
    with pytest.raises(ValueError, match="records no answers"):  # the fixed-context measure needs them
        fixed_contexts(store, 8)


def test_a_tool_agent_trajectory_has_a_turn_per_assistant_message_and_the_tool_output_as_context(tiny_model_path):
    tools = ToolListWrap(load_all_tools(None, str(TOOL)))
    output, server, tokenizer = run_loop(
        tiny_model_path, ['<tool_call>{"name": "add", "arguments": {"a": 3, "b": 4}}</tool_call>',
                          "<answer>7</answer>"],
        f"actor_rollout_ref.rollout.multi_turn.function_tool_path={TOOL}", loop_class=ToolAgentLoop, tools=tools)
    assert len(server.requests) == 2  # the tool's answer went back to the model, which answered
    row = _row(output, 1.0, "p", 0)
    (a, b), (c, d) = row["turn_spans"]
    mask, response = row["response_mask"], row["response_ids"]
    assert 0 == a < b < c < d <= len(mask) and not any(mask[b:c])
    assert '"name": "add"' in tokenizer.decode(response[a:b]) and tokenizer.decode(response[c:d]).startswith(
        "<answer>7</answer>")
    assert "7" in tokenizer.decode(response[b:c])  # the tool's output: context, never trained on
    assert (row["turn_rewards"], row["t_star"]) == ([1.0], 2)
    assert set(row) == set(SCHEMA.names)  # every column of a store row
