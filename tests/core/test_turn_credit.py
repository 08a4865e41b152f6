"""Turn-level credit (``algorithm.adv_estimator=grpo_turn``) against hand-computed cases and verl's own GRPO."""

from statistics import mean, stdev
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

from drift_verl.core.weights import FORMAT_PENALTY, turn_contributions
from drift_verl.core.turn_credit import turn_index, turn_level_advantage, turn_returns
from tests.core.rows import paper_return

GAMMA = 0.9
CONFIG = SimpleNamespace(gamma=GAMMA, norm_adv_by_std_in_grpo=True)


def _row(turn_shares: list[float], turn_len: int = 3, feedback_len: int = 2, width: int = 24):
    """A response of assistant turns (``turn_len`` tokens) separated by masked feedback, each turn's share at
    its last token, as the feedback agent loop lays them out; padded to ``width``."""
    mask, rewards = [], []
    for k, share in enumerate(turn_shares):
        if k:
            mask += [0] * feedback_len
            rewards += [0.0] * feedback_len
        mask += [1] * turn_len
        rewards += [0.0] * (turn_len - 1) + [share]
    pad = width - len(mask)
    return mask + [0] * pad, rewards + [0.0] * pad


def _batch(rows):
    masks, rewards = zip(*(_row(shares) for shares in rows))
    return torch.tensor(rewards, dtype=torch.float32), torch.tensor(masks, dtype=torch.float32)


def _per_turn(advantages, mask, row):
    """The advantage of each assistant turn of one row (constant over the turn's tokens)."""
    turns = turn_index(mask)[row]
    values = []
    for k in range(1, int(turns.max()) + 1):
        tokens = advantages[row][(turns == k) & mask[row].bool()]
        assert torch.allclose(tokens, tokens[0].expand_as(tokens))
        values.append(tokens[0].item())
    return values


def test_turn_shares_sum_to_the_return():
    cases = [([0, 0, 1], ["6", None, "7"]), ([0, 0, 0], ["1", "1", "2"]), ([1], ["5"]), ([0, 1], [None, "3"])]
    for rewards, answers in cases:
        given = [a for a in answers if a is not None]
        penalty = FORMAT_PENALTY * (len(answers) - len(given))
        assert sum(turn_contributions(rewards, answers, GAMMA, 0.5)) == pytest.approx(
            paper_return(rewards, penalty, given, GAMMA, 0.5))
    assert turn_contributions([0, 0, 1], ["6", None, "7"], GAMMA, 0.5) == pytest.approx([0.0, FORMAT_PENALTY, 0.81])


def test_hand_computed_group():
    # one prompt, three trajectories: A fails then solves at turn 2, B solves at once, C fails twice
    rewards, mask = _batch([[0.0, GAMMA], [1.0], [0.0, 0.0]])
    advantages, returns = turn_level_advantage(rewards, mask, np.array(["p"] * 3), config=CONFIG)
    assert torch.equal(advantages, returns)
    g1 = [0.9, 1.0, 0.0]  # turn 1: the whole return
    a1 = [(g - mean(g1)) / (stdev(g1) + 1e-6) for g in g1]
    g2 = [1.0, 0.0]  # turn 2, reached by A and C: A's reward counts 1 from there (0.9 / 0.9)
    a2 = [(g - mean(g2)) / (stdev(g2) + 1e-6) for g in g2]
    assert _per_turn(advantages, mask, 0) == pytest.approx([a1[0], a2[0]], abs=1e-5)
    assert _per_turn(advantages, mask, 1) == pytest.approx([a1[1]], abs=1e-5)
    assert _per_turn(advantages, mask, 2) == pytest.approx([a1[2], a2[1]], abs=1e-5)
    assert a2[0] > a1[0] > 0  # A's correction earns more credit than its wrong first answer (above C, below B)
    assert (advantages[mask == 0] == 0).all()  # feedback and padding get nothing


def test_a_turn_only_one_trajectory_reached_gets_no_advantage_and_groups_are_separate():
    rewards, mask = _batch([[0.0, 0.0, GAMMA**2], [1.0], [1.0], [0.0]])
    index = np.array(["p", "p", "q", "q"])
    advantages, _ = turn_level_advantage(rewards, mask, index, config=CONFIG)
    assert _per_turn(advantages, mask, 0)[1:] == [0.0, 0.0]  # turns 2, 3: no baseline
    g = [0.81, 1.0]
    assert _per_turn(advantages, mask, 0)[0] == pytest.approx((0.81 - mean(g)) / (stdev(g) + 1e-6), abs=1e-5)
    assert _per_turn(advantages, mask, 2) == pytest.approx([1 / (stdev([1.0, 0.0]) + 1e-6) * 0.5], abs=1e-5)


def test_returns_to_go_and_no_std_normalisation():
    rewards, mask = _batch([[0.0, FORMAT_PENALTY, GAMMA**2 - 0.25], [0.0, 0.0, 0.0]])
    to_go = turn_returns(rewards, mask, GAMMA)
    expected = [FORMAT_PENALTY + GAMMA**2 - 0.25, (FORMAT_PENALTY + GAMMA**2 - 0.25) / GAMMA, (GAMMA**2 - 0.25) / GAMMA**2]
    assert to_go[0].tolist() == pytest.approx(expected)
    config = SimpleNamespace(gamma=GAMMA, norm_adv_by_std_in_grpo=False)
    advantages, _ = turn_level_advantage(rewards, mask, np.array(["p", "p"]), config=config)
    assert _per_turn(advantages, mask, 0) == pytest.approx([e / 2 for e in expected], abs=1e-6)


def test_single_turn_trajectories_get_verls_grpo_advantage():
    generator = torch.Generator().manual_seed(0)
    rows = [[float(x)] for x in torch.randint(0, 2, (16,), generator=generator)]
    rewards, mask = _batch(rows)
    index = np.array([f"p{i // 4}" for i in range(16)], dtype=object)
    ours, _ = turn_level_advantage(rewards, mask, index, config=CONFIG)
    verls, _ = compute_grpo_outcome_advantage(rewards, mask, index)
    assert torch.allclose(ours, verls, atol=1e-5)
