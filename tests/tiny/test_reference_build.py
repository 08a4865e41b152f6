"""The reference build's console: verl SFT steps as a progress bar, and a stuck trainer killed, not waited on."""

import sys

import pytest

from drift_verl.tiny import reference

STEPS = "import time\nfor i in range(1, 4):\n    print(f'step:{i} - train/loss:1.0', flush=True)\n    time.sleep(0.2)\n"


def test_steps_show_as_a_progress_bar_and_the_output_stays_in_the_log(tmp_path, capsys):
    log = tmp_path / "sft.log"
    code = reference.run_with_progress([sys.executable, "-c", STEPS], {}, tmp_path, log, total_steps=3)
    assert code == 0
    err = capsys.readouterr().err
    assert "reference policy: verl SFT steps" in err and "3/3" in err
    assert "train/loss" not in err and log.read_text().count("step:") == 3


def test_a_trainer_that_logs_no_step_is_killed_with_its_log_named(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "STALL_S", 2)
    log = tmp_path / "sft.log"
    with pytest.raises(RuntimeError, match=rf"logged no step for 2 s: killed; log: {log}"):
        reference.run_with_progress([sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path, log, 10)
