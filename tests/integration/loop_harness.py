"""The feedback agent loop in process: verl's real AgentLoopBase and token merging with the tiny tokenizer, a
scripted rollout server instead of vLLM, the real verifier workers."""

import asyncio

from hydra import compose, initialize_config_module
from transformers import AutoTokenizer
from verl.experimental.agent_loop.agent_loop import DictConfigWrap
from verl.workers.rollout.replica import TokenOutput

from drift_verl.integration.training.feedback_loop import FeedbackAgentLoop
from tests.conftest import REPO

PROMPT = [{"role": "user", "content": "What is 3 + 4? Answer in <answer></answer>."}]


class ScriptedServer:
    """Answers each turn with the next scripted text; records what it was asked."""

    def __init__(self, tokenizer, answers: list[str]):
        self.tokenizer, self.answers, self.requests = tokenizer, list(answers), []

    async def generate(self, request_id, prompt_ids, sampling_params, **kwargs):
        self.requests.append((list(prompt_ids), dict(sampling_params)))
        text = self.answers.pop(0)
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=ids, stop_reason="completed")


def run_loop(tiny_model_path, answers: list[str], *overrides: str, prompt=PROMPT, ground_truth="7",
             loop_class=FeedbackAgentLoop, **loop_kwargs):
    """(the output of ``loop_class`` (the feedback loop, or one of verl's) for ``prompt`` answered with
    ``answers`` in turn, the server, the tokenizer)."""
    with initialize_config_module(config_module="recipes", version_base=None):
        config = compose(config_name="drift_main", overrides=[
            "recipe=drift", f"reward.custom_reward_function.path={REPO / 'reward_fns' / 'exact.py'}", *overrides])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    server = ScriptedServer(tokenizer, answers)

    async def trajectory():  # built inside the running event loop, as verl's agent-loop worker does
        loop = loop_class(DictConfigWrap(config), server, tokenizer, None, None, DictConfigWrap(config.data),
                          hf_model_type="qwen2", **loop_kwargs)
        return await loop.run({"temperature": 1.0}, raw_prompt=prompt, reward_model={"ground_truth": ground_truth},
                              data_source="tiny", extra_info={})

    return asyncio.run(trajectory()), server, tokenizer
