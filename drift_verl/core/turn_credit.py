"""Turn-level credit for multi-turn GRPO (``algorithm.adv_estimator=grpo_turn``): each assistant turn is judged by
the return *from that turn on*, against the other trajectories of its group that reached the same turn.

verl's GRPO gives every token of a trajectory one advantage, so a success at turn 3 also reinforces the two wrong
answers before it. Here turn k's tokens get ``G_k = sum_{t>=k} c_t / gamma^(k-1)`` (``c_t``: turn t's share of the
return, :func:`drift_verl.core.weights.turn_contributions`, which the feedback agent loop places at each turn's
last token), normalised per (prompt, k). Turn 1 is exactly GRPO's advantage; a turn only one trajectory of its
group reached has no baseline and gets 0. Pure torch: verl calls it through its advantage-estimator registry with
``token_level_rewards``, ``response_mask``, ``index`` (the prompt uid) and ``config`` (``algorithm``).
"""

from __future__ import annotations

from collections import defaultdict

import torch

NAME = "grpo_turn"  # not "grpo": verl's v1 trainer broadcasts a grpo row's first advantage over the row


def turn_index(response_mask: torch.Tensor) -> torch.Tensor:
    """Per token, the 1-based index of the assistant turn it belongs to or follows (0 before the first):
    turns are the runs of ``response_mask == 1``; feedback tokens between them are masked."""
    mask = response_mask.bool()
    starts = mask & ~torch.nn.functional.pad(mask[:, :-1], (1, 0), value=False)
    return starts.long().cumsum(dim=1)


def turn_returns(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """(batch, turns) ``G_k``: the return from turn k on, rescaled so turn k's own reward counts 1; NaN for turns
    a trajectory did not reach."""
    turns = turn_index(response_mask.cpu())
    num_turns = max(int(turns.max()) if turns.numel() else 0, 1)
    shares = torch.zeros(turns.size(0), num_turns + 1, dtype=torch.float64)
    shares.scatter_add_(1, turns, token_level_rewards.detach().cpu().double())
    shares[:, 1] += shares[:, 0]  # a reward before any turn counts for turn 1
    shares = shares[:, 1:]
    to_go = shares.flip(1).cumsum(1).flip(1) / gamma ** torch.arange(num_turns, dtype=torch.float64)
    reached = torch.arange(1, num_turns + 1) <= turns.max(dim=1, keepdim=True).values
    return to_go.masked_fill(~reached, float("nan"))


def turn_level_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index, config=None,
                         epsilon: float = 1e-6, **_) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's estimator signature: (advantages, returns), both per token."""
    returns = turn_returns(token_level_rewards, response_mask, float(getattr(config, "gamma", 1.0)))
    by_std = bool(getattr(config, "norm_adv_by_std_in_grpo", True))
    per_turn = torch.zeros_like(returns)
    members = defaultdict(list)  # (prompt, turn) -> the rows that reached that turn
    for row, k in (~returns.isnan()).nonzero().tolist():
        members[(index[row], k)].append(row)
    for (_, k), rows in members.items():
        if len(rows) < 2:
            continue
        values = returns[rows, k]
        centred = values - values.mean()
        per_turn[rows, k] = centred / (values.std() + epsilon) if by_std else centred
    turns = turn_index(response_mask.cpu()).clamp(min=1) - 1
    advantages = per_turn.gather(1, turns).to(token_level_rewards.device, token_level_rewards.dtype) * response_mask
    return advantages, advantages
