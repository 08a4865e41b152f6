"""How good a tiny-task policy is, measured directly with Hugging Face sampling (no Ray, no vLLM).

The feedback environment played in plain PyTorch: every conversation answers at temperature 1; a wrong or
untagged answer hears the environment's feedback (``env``: a built-in name of :mod:`drift_verl.core.environment`,
the paper's ``try_again`` by default) and tries again, up to ``max_turns``. Used to check the reference
policy the build produces (tests, ``python -m drift_verl.tiny.quality MODEL``) in seconds, where verl's
validation needs a whole job.
"""

from __future__ import annotations

import json
import sys

from drift_verl.core.answers import extract_answer_tag
from drift_verl.core.config import EnvConfig
from drift_verl.core.environment import environment_class
from drift_verl.tiny import task as tiny_task


def solved_within(model_path: str, problems: list[tiny_task.Problem], samples: int = 8, max_turns: int = 5,
                  seed: int = 0, turn_tokens: int = 8, env: str = "try_again") -> list[float]:
    """Share of (problem, sample) conversations solved within 1..max_turns turns."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    conversations = [[{"role": "system", "content": tiny_task.SYSTEM_PROMPT},
                      {"role": "user", "content": tiny_task.question(p)}] for p in problems for _ in range(samples)]
    answers = [str(sum(p)) for p in problems for _ in range(samples)]
    envs = [environment_class(env)(EnvConfig(name=env, max_turns=max_turns)) for _ in answers]
    for environment, answer in zip(envs, answers):
        environment.reset({"ground_truth": answer})
    solved_at = [0] * len(conversations)  # turn of the first right answer, 0 while unsolved
    for turn in range(1, max_turns + 1):
        open_ = [i for i, t in enumerate(solved_at) if not t]
        if not open_:
            break
        texts = [tokenizer.apply_chat_template(conversations[i], add_generation_prompt=True, tokenize=False)
                 for i in open_]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=turn_tokens, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id)
        replies = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, reply in zip(open_, replies):
            answer = extract_answer_tag(reply)
            if answer == answers[i]:
                solved_at[i] = turn
            conversations[i] += [{"role": "assistant", "content": reply.strip()},
                                 {"role": "user", "content": envs[i].step(reply, answer, float(answer == answers[i]),
                                                                           turn)}]
    return [sum(0 < t <= k for t in solved_at) / len(solved_at) for k in range(1, max_turns + 1)]


if __name__ == "__main__":  # python -m drift_verl.tiny.quality MODEL [SPLIT [ENV [TURN_TOKENS]]]
    split = sys.argv[2] if len(sys.argv) > 2 else "dev"
    env = sys.argv[3] if len(sys.argv) > 3 else "try_again"
    turn_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 8  # task=tiny_long's worked answers need 32
    scores = solved_within(sys.argv[1], tiny_task.splits()[split], samples=16, env=env, turn_tokens=turn_tokens)
    print(json.dumps({split: {"env": env, "turn_tokens": turn_tokens,
                              **{f"solved_within_{k}": round(s, 4) for k, s in enumerate(scores, 1)}}}))
