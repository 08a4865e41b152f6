"""DRIFT's checkpoints record the mini-batch order their steps were cut by; resuming from one cut another way (or
from before the whole-group order) stops before training. verl's own save and resume are reduced to the folder
and step they settle on; the DRIFT trainer's hooks around them run as they are."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.v1.trainer_base import PPOTrainer

from drift_verl.core.schedule import ORDER_FILE, Schedule, ScheduleError
from drift_verl.integration.training.trainer import DriftTrainer


@pytest.fixture(autouse=True)
def verl_checkpoints(monkeypatch):
    def save(self):
        folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        (folder / "actor").mkdir(parents=True, exist_ok=True)
        (folder.parent / "latest_checkpointed_iteration.txt").write_text(str(self.global_steps))

    def load(self):
        trainer, self.global_steps = self.config.trainer, 0
        tracker = Path(trainer.default_local_dir) / "latest_checkpointed_iteration.txt"
        if trainer.resume_mode == "resume_path":
            self.global_steps = int(trainer.resume_from_path.split("global_step_")[-1])
        elif trainer.resume_mode == "auto" and tracker.exists():
            self.global_steps = int(tracker.read_text())

    monkeypatch.setattr(PPOTrainer, "_save_checkpoint", save)
    monkeypatch.setattr(PPOTrainer, "_load_checkpoint", load)


def _trainer(run: Path, window: int = 2, resume_mode: str = "auto", resume_from_path: str | None = None):
    trainer = object.__new__(DriftTrainer)  # no workers: only the checkpoint hooks are exercised
    trainer.config = OmegaConf.create({"trainer": {"default_local_dir": str(run), "resume_mode": resume_mode,
                                                   "resume_from_path": resume_from_path}})
    trainer.__dict__["schedule"] = Schedule.of(32, 4, 4, window, epochs=1, rounds=1, seed=0)
    trainer.global_steps = 0
    return trainer


def _saved_at(run: Path, step: int) -> Path:
    trainer = _trainer(run)
    trainer.global_steps = step
    trainer._save_checkpoint()
    return run / f"global_step_{step}"


def test_a_checkpoint_records_the_order_and_resumes_under_it(tmp_path):
    folder = _saved_at(tmp_path, 4)
    assert (folder / ORDER_FILE).is_file() and (folder / "actor").is_dir()
    trainer = _trainer(tmp_path)
    trainer._load_checkpoint()
    assert trainer.global_steps == 4
    other = _trainer(tmp_path, window=3, resume_mode="disable")  # starting afresh is never refused
    other._load_checkpoint()
    assert other.global_steps == 0


@pytest.mark.parametrize("resume_mode", ["auto", "resume_path"])
def test_a_resume_from_another_order_stops_before_training(tmp_path, resume_mode):
    folder = _saved_at(tmp_path, 4)
    resume_from = str(folder) if resume_mode == "resume_path" else None
    with pytest.raises(ScheduleError, match=rf"^{folder}: cannot resume .* drift.shuffle_window was 2, now 3"):
        _trainer(tmp_path, window=3, resume_mode=resume_mode, resume_from_path=resume_from)._load_checkpoint()
    (folder / ORDER_FILE).unlink()  # as a checkpoint of the old order has it
    with pytest.raises(ScheduleError, match=rf"^{folder}: cannot resume .* old mini-batch order"):
        _trainer(tmp_path, resume_mode=resume_mode, resume_from_path=resume_from)._load_checkpoint()
