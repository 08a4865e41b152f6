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
"""

from __future__ import annotations

import torch


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
