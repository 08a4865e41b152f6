"""padded_batch (numpy-filled, runs per mini-batch) against a per-token reference written out in the test."""

import numpy as np
import pytest
import torch

from drift_verl.core.loss import padded_batch


def _trained(row, response_len, train_turns):
    """The trained tokens, token by token: every assistant token, or the last turn's, within the response."""
    if train_turns == "all":
        return [int(m) for m in row["response_mask"][:response_len]]
    start, end = row["turn_spans"][-1] if row["turn_spans"] else (0, 0)
    return [int(start <= index < end) for index in range(response_len)]


def _reference(rows, weights, max_prompt_len, max_response_len, pad_id, train_turns):
    out = {key: [] for key in ("prompts", "responses", "attention_mask", "response_mask")}
    for row in rows:
        prompt = row["prompt_ids"][-max_prompt_len:]
        response = row["response_ids"][:max_response_len]
        left, right = max_prompt_len - len(prompt), max_response_len - len(response)
        out["prompts"].append([pad_id] * left + prompt)
        out["responses"].append(response + [pad_id] * right)
        out["attention_mask"].append([0] * left + [1] * (len(prompt) + len(response)) + [0] * right)
        out["response_mask"].append(_trained(row, len(response), train_turns) + [0] * right)
    out = {key: torch.tensor(value, dtype=torch.long) for key, value in out.items()}
    out["advantages"] = torch.tensor(weights, dtype=torch.float32)[:, None] * out["response_mask"]
    return out


def _rows(rng, count):
    rows = []
    for index in range(count):
        length = int(rng.integers(0, 12))
        last_turn = sorted(rng.integers(0, length + 3, size=2).tolist())  # may run past the response end
        spans = [] if index % 5 == 0 else [[0, 1], last_turn]
        rows.append({"prompt_ids": rng.integers(1, 50, size=int(rng.integers(0, 9))).tolist(),
                     "response_ids": rng.integers(1, 50, size=length).tolist(),
                     "response_mask": rng.integers(0, 2, size=length).tolist(), "turn_spans": spans})
    return rows


@pytest.mark.parametrize("train_turns", ["last", "all"])
def test_padded_batch_matches_reference(train_turns):
    rng = np.random.default_rng(7)
    rows = _rows(rng, 40)  # empty prompts/responses, truncation on both sides, spans past the response end
    weights = rng.random(len(rows))
    got = padded_batch(rows, weights, 6, 8, pad_id=0, train_turns=train_turns)
    expected = _reference(rows, weights, 6, 8, 0, train_turns)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
    assert torch.equal(got["input_ids"], torch.cat([expected["prompts"], expected["responses"]], dim=1))
    assert torch.equal(got["position_ids"], (expected["attention_mask"].cumsum(1) - 1).clamp(min=0))


def test_padded_batch_rejects_unknown_train_turns():
    with pytest.raises(ValueError, match="train_turns"):
        padded_batch(_rows(np.random.default_rng(0), 2), [1.0, 1.0], 4, 4, 0, "first")
