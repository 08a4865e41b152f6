"""LoRA with DRIFT's update, on the embedded reference policy: LoRA trains, and vLLM serves the trained adapter.
It trains from the README main job's store (phase 1 is not run again) and is compared with that job's steps. The
other verl options users set (dynamic batch size, padding removal, gradient checkpointing, loggers) are checked in
tests/e2e/test_drift_e2e.py, on verl's entry point."""

import pytest

from tests.conftest import run_job, tail
from tests.e2e.conftest import SHORTER, readme_main_job

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

STEPS = 8  # the main job's, shortened: 16 prompts x 8 samples, mini-batches of 16 prompts, 8 epochs
LORA = ["actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.lora_alpha=16",
        "actor_rollout_ref.model.target_modules=[q_proj,k_proj,v_proj,o_proj]"]


def test_lora_trains_and_vllm_serves_the_trained_adapter(main_job, tmp_path):
    main_dir, _, plain = main_job
    # a learning rate that wrecks the policy: validation shows whether vLLM serves the trained adapter
    proc, lora = run_job([*readme_main_job(), *SHORTER, f"drift.store_dir={main_dir / 'drift_store'}", *LORA,
                          "actor_rollout_ref.actor.optim.lr=0.2"], tmp_path, timeout=600)
    assert proc.returncode == 0, tail(proc)
    assert lora[0]["drift/rollout/new_trajectories"] == 0  # the main job's store
    # a new adapter starts at zero: the first step sees the reference policy itself, with each trajectory's weight
    assert lora[1]["actor/pg_loss"] == pytest.approx(plain[1]["actor/pg_loss"], rel=1e-5)
    assert lora[STEPS]["actor/drift/nll"] > 2 * lora[1]["actor/drift/nll"]  # lr 0.2 wrecks it
    accuracy = [value for step in (0, STEPS) for key, value in lora[step].items() if key.startswith("val-core/")
                and key.endswith("/acc/mean@4")]
    assert len(accuracy) == 2 and accuracy[0] > 0.25 and accuracy[1] < 0.1, accuracy
