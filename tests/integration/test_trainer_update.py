"""One optimizer step of DRIFT's trainer (``_update``) normalises the whole step's weights before verl splits it
(``drift.loss_normalization``); verl's actor worker is replaced by one that records what it was given."""

import numpy as np
import pytest
from omegaconf import OmegaConf
from verl.utils import tensordict_utils as tu

from drift_verl.integration.training import trainer as trainer_module
from drift_verl.core.config import DriftConfig
from drift_verl.integration.training.trainer import DriftTrainer

ROWS = [{"prompt_ids": [5, 6], "response_ids": [7, 8, 9], "response_mask": [1, 1, 1], "turn_spans": [[0, 3]]}] * 4


class _Actor:
    def __init__(self):
        self.batches = []

    def update_actor(self, batch):
        self.batches.append(batch)
        metrics = {"mfu": [0.0], "drift/nll_sum": [4.0], "drift/nll_seqs": [4.0]}
        return tu.get_tensordict(tensor_dict={}, non_tensor_dict={"metrics": metrics})


def _trainer(mode: str) -> DriftTrainer:
    trainer = object.__new__(DriftTrainer)  # no workers: only the step's own arithmetic runs
    trainer.config = OmegaConf.create({"data": {"max_prompt_length": 4, "max_response_length": 4}})
    trainer.tokenizer = type("Tokenizer", (), {"pad_token_id": 0})()
    trainer.drift = DriftConfig(loss_normalization=mode)
    trainer.actor_rollout_wg = _Actor()
    return trainer


@pytest.mark.parametrize("mode, expected", [
    ("mean", [2.0, 0.0, 1.0, 0.0]),
    ("weight_sum", [8 / 3, 0.0, 4 / 3, 0.0]),  # x B / sum(w) = 4 / 3
])
def test_the_step_is_normalised_before_verl_splits_it(monkeypatch, mode, expected):
    given, real = [], trainer_module.padded_batch

    def recording(rows, weights, *args):
        given.append(weights)
        return real(rows, weights, *args)

    monkeypatch.setattr(trainer_module, "padded_batch", recording)
    trainer = _trainer(mode)
    metrics = trainer._update(ROWS, np.array([2.0, 0.0, 1.0, 0.0]))
    assert given[0] == pytest.approx(expected)
    assert metrics["drift/update/weight_sum"] == 3.0 and metrics["actor/drift/nll"] == 1.0
    (batch,) = trainer.actor_rollout_wg.batches
    assert tu.get(batch, "global_batch_size") == tu.get(batch, "mini_batch_size") == 4  # verl's 1/B: the whole step


def test_a_step_without_weight_trains_nothing():
    trainer = _trainer("weight_sum")
    metrics = trainer._update(ROWS, np.zeros(4))  # rejection weighting, no success in this step
    assert metrics["drift/update/weight_sum"] == 0.0
    (batch,) = trainer.actor_rollout_wg.batches
    advantages = batch["advantages"]
    values = advantages.values() if advantages.is_nested else advantages
    assert float(values.abs().sum()) == 0.0


def test_verl_names_the_mode_and_the_drift_trainer_runs_as_sync():
    """verl 0.9.1's trainer sets ``trainer_mode`` from the config, then builds its replay buffer and branches on it;
    the DRIFT trainer reads ``sync`` from the first use on."""
    import inspect

    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    init = inspect.getsource(PPOTrainer.__init__)
    assert init.index("self.trainer_mode = self.config.trainer.v1.trainer_mode") < init.index("_build_replay_buffer()")
    trainer = object.__new__(DriftTrainer)
    trainer.trainer_mode = "drift"  # what verl assigns
    assert trainer.trainer_mode == "sync"


def test_the_step_carries_every_setting_verls_own_actor_update_sends():
    """DRIFT's step cannot go through verl's ``_update_actor`` (it takes a TransferQueue ``KVBatchMeta`` and the
    rollout temperature; DRIFT sends a tensordict and trains its NLL at temperature 1), so it sends the same
    settings itself. Read from verl's source: a setting verl adds to its update (or a change in how it names the
    update's metrics) fails here instead of being silently left out of DRIFT's step."""
    import ast
    import inspect
    import textwrap

    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    source = textwrap.dedent(inspect.getsource(PPOTrainer._update_actor))
    (extra_info,) = [node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assign)
                     and any(getattr(t, "id", None) == "extra_info" for t in node.targets)]
    verl_settings = {key.value for key in extra_info.keys}
    assert 'rename_dict(output["metrics"], "actor/")' in source and 'output.pop("actor/mfu")' in source
    trainer = _trainer("mean")
    metrics = trainer._update(ROWS, np.ones(4))
    (batch,) = trainer.actor_rollout_wg.batches
    sent = {key for key in verl_settings if tu.get(batch, key) is not None}
    assert sent == verl_settings, f"verl's update sends {sorted(verl_settings - sent)} too"
    assert tu.get(batch, "temperature") == 1.0 and tu.get(batch, "compute_loss") is True
    assert "perf/mfu/actor" in metrics and "actor/drift/nll" in metrics
