"""DRIFT's weighted-SFT loss, registered in verl's policy-loss registry as ``drift``.

Why the policy-loss registry (``actor.policy_loss.loss_mode=drift``) rather than an engine loss: verl's
``ppo_loss`` then runs it inside the actor worker exactly like GRPO's loss -- same FSDP engine, micro-batching,
gradient accumulation, global-batch normalisation across data-parallel ranks, optimizer, LR schedule and
checkpointing -- and the only DRIFT-specific data, one weight per trajectory, travels in ``advantages``
(constant over the trajectory's trained tokens; ``response_mask`` marks those tokens).

loss = (1/B) * sum_i w_i * mean_{t in trained(i)} -log pi(y_t | context): no ratio, no clipping, no old policy.
B is the optimizer step's number of trajectories (verl's global batch size, over all micro-batches and ranks).
With ``drift.loss_normalization=weight_sum`` the driver first rescales the step's weights by B / sum(w)
(:func:`drift_verl.core.weights.step_weights`), so the same aggregation gives sum_i w_i L_i / sum_i w_i.

The batch it runs on: :func:`padded_batch` turns stored trajectories into the padded tensors verl's actor update
takes (pure torch). The trained tokens are the last assistant turn (the reference implementation's choice: earlier
turns are context) or, with ``train_turns=all``, every assistant token; the trajectory's weight is spread over its
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


def weighted_nll_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    config=None,
    rollout_is_weights: torch.Tensor | None = None,
):
    from verl.trainer.ppo.core_algos import agg_loss

    batch_info = dict(config.global_batch_info) if config is not None else {}
    mask = response_mask.to(log_prob.dtype)
    # the unweighted NLL of the trained tokens, for the logs, as a sum and a count of trajectories: verl averages a
    # metric over micro-batches, which use_dynamic_bsz makes of unequal sizes (see :func:`nll_metric`)
    tokens = mask.sum(dim=-1)
    seq_nll = (-log_prob.detach() * mask).sum(dim=-1) / tokens.clamp(min=1)
    # actor.loss_agg_mode: seq-mean-token-mean (the recipe's, the paper's definition) or any of verl's modes
    loss = agg_loss(loss_mat=-advantages * log_prob, loss_mask=mask, loss_agg_mode=loss_agg_mode, **batch_info)
    trained = tokens > 0
    return loss, {"drift/nll_sum": seq_nll[trained].sum().item(), "drift/nll_seqs": float(trained.sum().item())}


def nll_metric(metrics: dict, prefix: str = "actor/") -> dict:
    """The mini-batch's mean NLL per trajectory (``drift/nll``) from the loss's per-micro-batch sum and count
    (both averaged over micro-batches by verl's metric reduction: their ratio is the ratio of the sums)."""
    seqs = metrics.pop(f"{prefix}drift/nll_seqs")
    metrics[f"{prefix}drift/nll"] = metrics.pop(f"{prefix}drift/nll_sum") / seqs if seqs else float("nan")
    return metrics


def register(core_algos) -> None:
    if "drift" not in core_algos.POLICY_LOSS_REGISTRY:
        core_algos.register_policy_loss("drift")(weighted_nll_loss)
