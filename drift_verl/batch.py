"""Turn stored trajectories into the padded batch verl's actor update takes (pure torch, no verl import).

The trained tokens are the last assistant turn (the reference implementation's choice: earlier turns are
context) or, with ``train_turns=all``, every assistant token. The trajectory's weight is spread over its
trained tokens as ``advantages``.
"""

from __future__ import annotations

import torch

TRAIN_TURNS = ("last", "all")


def trained_mask(row: dict, response_len: int, train_turns: str) -> list[int]:
    """1 on the tokens this trajectory is trained on, within its (truncated) response."""
    if train_turns == "all":
        return [int(m) for m in row["response_mask"][:response_len]]
    if train_turns != "last":
        raise ValueError(f"drift.train_turns must be one of {TRAIN_TURNS}, got {train_turns!r}")
    mask = [0] * response_len
    if row["turn_spans"]:
        start, end = row["turn_spans"][-1]
        for index in range(start, min(end, response_len)):
            mask[index] = 1
    return mask


def padded_batch(rows: list[dict], weights, max_prompt_len: int, max_response_len: int, pad_id: int,
                 train_turns: str = "last") -> dict[str, torch.Tensor]:
    """Left-padded prompts, right-padded responses, and the fields verl's ``ppo_loss`` reads."""
    size = len(rows)
    prompts = torch.full((size, max_prompt_len), pad_id, dtype=torch.long)
    responses = torch.full((size, max_response_len), pad_id, dtype=torch.long)
    prompt_attn = torch.zeros((size, max_prompt_len), dtype=torch.long)
    response_attn = torch.zeros((size, max_response_len), dtype=torch.long)
    mask = torch.zeros((size, max_response_len), dtype=torch.long)
    for i, row in enumerate(rows):
        prompt = row["prompt_ids"][-max_prompt_len:]
        response = row["response_ids"][:max_response_len]
        if prompt:
            prompts[i, -len(prompt):] = torch.tensor(prompt)
            prompt_attn[i, -len(prompt):] = 1
        responses[i, : len(response)] = torch.tensor(response, dtype=torch.long)
        response_attn[i, : len(response)] = 1
        mask[i, : len(response)] = torch.tensor(trained_mask(row, len(response), train_turns), dtype=torch.long)
    attention_mask = torch.cat([prompt_attn, response_attn], dim=1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    weight = torch.as_tensor(weights, dtype=torch.float32).unsqueeze(1)
    return {
        "prompts": prompts,
        "responses": responses,
        "input_ids": torch.cat([prompts, responses], dim=1),
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "response_mask": mask,
        "advantages": weight * mask,
        "old_log_probs": torch.zeros((size, max_response_len), dtype=torch.float32),  # unused by the loss
    }
