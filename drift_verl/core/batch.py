"""Turn stored trajectories into the padded batch verl's actor update takes (pure torch, no verl import).

The trained tokens are the last assistant turn (the reference implementation's choice: earlier turns are
context) or, with ``train_turns=all``, every assistant token. The trajectory's weight is spread over its
trained tokens as ``advantages``.
"""

from __future__ import annotations

import numpy as np
import torch

from drift_verl.core.config import TRAIN_TURNS


def trained_mask(row: dict, response_len: int, train_turns: str) -> np.ndarray:
    """1 on the tokens this trajectory is trained on, within its (truncated) response of ``response_len`` tokens."""
    if train_turns == "all":
        return np.asarray(row["response_mask"][:response_len], dtype=np.int64)
    if train_turns != "last":
        raise ValueError(f"drift.train_turns must be one of {TRAIN_TURNS}, got {train_turns!r}")
    mask = np.zeros(response_len, dtype=np.int64)
    if row["turn_spans"]:
        start, end = row["turn_spans"][-1]
        mask[start:min(end, response_len)] = 1
    return mask


def padded_batch(rows: list[dict], weights, max_prompt_len: int, max_response_len: int, pad_id: int,
                 train_turns: str) -> dict[str, torch.Tensor]:
    """Left-padded prompts, right-padded responses, and the fields verl's ``ppo_loss`` reads.

    Filled as numpy arrays, one copy per row and field (this runs once per mini-batch of DRIFT's update); the
    trained tokens are those of :func:`trained_mask`."""
    size = len(rows)
    prompts = np.full((size, max_prompt_len), pad_id, dtype=np.int64)
    responses = np.full((size, max_response_len), pad_id, dtype=np.int64)
    mask = np.zeros((size, max_response_len), dtype=np.int64)
    prompt_lens = np.zeros(size, dtype=np.int64)
    response_lens = np.zeros(size, dtype=np.int64)
    for i, row in enumerate(rows):
        prompt = row["prompt_ids"][-max_prompt_len:]
        response = row["response_ids"][:max_response_len]
        prompt_lens[i], response_lens[i] = len(prompt), len(response)
        prompts[i, max_prompt_len - len(prompt):] = prompt
        responses[i, : len(response)] = response
        mask[i, : len(response)] = trained_mask(row, len(response), train_turns)
    prompt_attn = np.arange(max_prompt_len) >= (max_prompt_len - prompt_lens)[:, None]
    response_attn = np.arange(max_response_len) < response_lens[:, None]
    attention_mask = torch.from_numpy(np.concatenate([prompt_attn, response_attn], axis=1).astype(np.int64))
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    weight = torch.as_tensor(np.asarray(weights, dtype=np.float32)).unsqueeze(1)
    mask = torch.from_numpy(mask)
    prompts, responses = torch.from_numpy(prompts), torch.from_numpy(responses)
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
