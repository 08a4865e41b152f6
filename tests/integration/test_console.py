"""The quiet console (drift_verl/integration/job/quiet.py, console.py) in real processes: file descriptors 1 and 2 go to
the run's log (C-level output and children included), the terminal keeps what the job's processes send it, and a
failure still ends with its one clear line and the log's path. Also the console mode, per-run metrics files, and a
start-up failure of ``python -m drift_verl.main`` on the quiet console."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from drift_verl.eval.runs import read_metrics
from drift_verl.integration.job import quiet, run_files
from drift_verl.integration.training import report
from tests.conftest import REPO

# a driver with a quiet console: Python and C-level output, a child process that prints and uses the relay
DRIVER = textwrap.dedent("""
    import os, subprocess, sys
    from pathlib import Path
    from drift_verl.integration.job.quiet import QuietConsole
    from drift_verl.integration.job import console

    CHILD = '''
    import os, sys
    from tqdm import tqdm
    from drift_verl.integration.job import console
    print("child stdout, for the log", flush=True)
    os.write(2, b"child C-level stderr, for the log\\\\n")
    console.show("[drift] validation at step 0 ...")
    console.say("[drift] validation at step 0: solved<=1 0.250")
    for _ in tqdm(range(3), desc="child bar", file=console.bar_file()):
        pass
    console.say("[drift] summary line 1\\\\n  summary line 2")
    console.close()
    '''
    folder = Path(sys.argv[1])
    with QuietConsole(folder, None):
        print("driver python stdout, for the log", flush=True)
        print("driver python stderr, for the log", file=sys.stderr, flush=True)
        os.write(1, b"driver C-level stdout, for the log\\n")
        os.system("echo driver shell child, for the log")
        subprocess.run([sys.executable, "-c", CHILD], check=True)
        if sys.argv[2] == "raise":
            raise RuntimeError("the verifier exploded")
        if sys.argv[2] == "exit":
            raise SystemExit("drift-verl: job failed: something died; log: /tmp/worker.err")
        if sys.argv[2] == "monitor":
            console.report_failure("drift-verl: job failed: a monitor line; log: /tmp/worker.err")
""")


def _drive(tmp_path: Path, outcome: str) -> tuple[subprocess.CompletedProcess, str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("DRIFT_VERL_CONSOLE", None)
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "run"), outcome], capture_output=True,
                          env=env, timeout=120, cwd=tmp_path)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()  # carriage returns kept, as a terminal gets them
    log = (tmp_path / "run" / "console.log").read_text()
    return proc, proc.stdout + proc.stderr, log


def _lines(text: str) -> list[str]:
    """Console lines as a terminal ends up showing them: a line rewritten with carriage returns counts once."""
    return [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]


def test_quiet_console_sends_everything_to_the_log_and_keeps_the_job_lines(tmp_path):
    proc, console_text, log = _drive(tmp_path, "ok")
    assert proc.returncode == 0, console_text
    for line in ("driver python stdout", "driver python stderr", "driver C-level stdout", "driver shell child",
                 "child stdout", "child C-level stderr"):
        assert line in log and line not in console_text, line
    lines = _lines(proc.stdout)
    assert lines[0] == f"drift-verl: run folder: {tmp_path / 'run'}"
    assert lines[1].startswith(f"drift-verl: log: {tmp_path / 'run' / 'console.log'}")
    # the validation line replaced the "..." shown before it; the multi-line summary came whole, in order
    assert lines[2:5] == ["[drift] validation at step 0: solved<=1 0.250", "[drift] summary line 1",
                          "  summary line 2"]
    assert lines[-1] == f"drift-verl: log: {tmp_path / 'run' / 'console.log'}"
    assert "child bar: 100%" in _lines(proc.stderr)[-1]
    # the phase lines are in the log too (through the child's stdout)
    assert "[drift] validation at step 0: solved<=1 0.250" in log


def test_an_uncaught_error_ends_with_its_last_lines_and_the_log(tmp_path):
    proc, console_text, log = _drive(tmp_path, "raise")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()
    assert last[-1] == ("drift-verl: the run failed: RuntimeError: the verifier exploded; "
                        f"log: {tmp_path / 'run' / 'console.log'}")
    assert "Traceback (most recent call last)" in log and "the verifier exploded" in log
    assert len(_lines(console_text)) < 25


def test_a_clear_failure_line_stays_last_and_the_log_is_named(tmp_path):
    proc, _, _ = _drive(tmp_path, "exit")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()
    assert last[-2:] == [f"drift-verl: log: {tmp_path / 'run' / 'console.log'}",
                         "drift-verl: job failed: something died; log: /tmp/worker.err"]


def test_the_monitor_line_reaches_the_terminal(tmp_path):
    proc, _, log = _drive(tmp_path, "monitor")
    assert "drift-verl: job failed: a monitor line; log: /tmp/worker.err" in proc.stderr
    assert f"drift-verl: log: {tmp_path / 'run' / 'console.log'}" in proc.stderr
    assert "a monitor line" in log


def test_one_line_per_validation_with_the_metrics_that_matter():
    means = {"solved_within_1": 0.25, "solved_within_2": 0.5, "solved_within_3": 0.625, "assistant_turns": 2.0,
             "acc": 0.625, "solved_turn": 1.0, "fresh_answers": 0.75, "retried_answers": 1.0, "unparsed_turns": 0.0}
    metrics = {f"val-core/tiny/{k}/mean@4": v for k, v in means.items()}
    metrics["val-aux/tiny/score/mean@4"] = 0.625
    assert report.validation_line(8, metrics, 12.4) == ("[drift] validation at step 8: tiny: solved<=1 0.250, "
                                                        "solved<=3 0.625, non-repeat 0.750 (12 s)")
    assert report.validation_line(0, {}, 3) == "[drift] validation at step 0: done (3 s)"
    # a source another agent loop scored (single_turn_agent, tool_agent): verl's mean reward, no turns
    assert report.validation_line(0, {**metrics, "val-core/other/acc/mean@1": 1.0}, 3) == (
        "[drift] validation at step 0: tiny: solved<=1 0.250, solved<=3 0.625, non-repeat 0.750; other: reward 1.000 "
        f"({report.UNSCORED_BY_TURN}) (3 s)")
    lines = report.summary({}, [(0, {"val-core/other/acc/mean@1": 0.25}), (4, {"val-core/other/acc/mean@1": 0.5})],
                           None, None)
    assert f"  validation other: step 0 -> step 4: reward  0.250 ->  0.500 ({report.UNSCORED_BY_TURN})" in lines


def test_the_summary_gives_the_gain_paired_by_problem_from_verls_validation_dumps(tmp_path):
    """Two validations dumped as verl's ``_write_generations`` writes them (one JSON line per trajectory)."""
    def dump(step: int, solved: list[list[float]]) -> dict:
        rows = [{"input": f"problem {p}", "output": "...", "gts": "7", "score": s, "step": step, "data_source": "tiny",
                 "solved_within_1": s, "solved_within_2": s, "uid": f"u{p}_{i}_0"}
                for p, values in enumerate(solved) for i, s in enumerate(values)]
        (tmp_path / f"{step}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        means = {"solved_within_1": 0.5, "solved_within_2": 0.5, "assistant_turns": 1.5, "acc": 0.5,
                 "solved_turn": 1.0, "fresh_answers": 0.5, "retried_answers": 1.0, "unparsed_turns": 0.0}
        return {f"val-core/tiny/{k}/mean@2": v for k, v in means.items()}

    history = [(0, dump(0, [[0, 0], [1, 0], [0, 1]])), (8, dump(8, [[1, 1], [1, 0], [1, 1]]))]
    gains = report.validation_gains(str(tmp_path), history, max_turns=2)
    assert gains["tiny"]["problems"] == 3 and gains["tiny"]["gain"] == pytest.approx(0.5)  # per problem +1, 0, +0.5
    text = report.summary({"round 0 phase 3 (update)": 10.0}, history, None, None, gains)
    (line,) = [line for line in text.splitlines() if "change in" in line]
    low, high = gains["tiny"]["ci"]
    assert line == f"    change in solved_within_2: +0.500 (95% CI {low:+.3f} to {high:+.3f}; paired over 3 problems)"
    assert "selection" not in text and "drift.non_repeat_contexts fixes the contexts" in text
    assert report.validation_gains(str(tmp_path), history[:1], 2) == report.validation_gains(None, history, 2) == {}
    assert "change in" not in report.summary({}, history, None, None, {})  # no dumps: no gain line
    (tmp_path / "8.jsonl").write_text("not json\n")  # a damaged dump: no gain, and the run still ends well
    assert report.validation_gains(str(tmp_path), history, 2) == {}


def test_the_summary_gives_fixed_context_repeats_beside_the_raw_non_repeat():
    means = {"solved_within_1": 0.5, "solved_within_2": 0.5, "assistant_turns": 1.5, "acc": 0.5, "solved_turn": 1.0,
             "fresh_answers": 0.5, "retried_answers": 1.0, "unparsed_turns": 0.0}
    history = [(step, {f"val-core/tiny/{k}/mean@2": v for k, v in means.items()}) for step in (0, 8)]
    repeats = {"contexts": 3, "samples": 4, "before": 0.5, "after": 0.25, "change": -0.25, "ci": [-0.4, -0.1]}
    lines = report.summary({}, history, None, None, {}, repeats).splitlines()
    assert lines[-3:-1] == ["    repeats_fixed_context     0.500 ->  0.250",
                            "    change in repeats_fixed_context: -0.250 (95% CI -0.400 to -0.100; paired over the "
                            "same 3 turn-2 contexts x 4 answers)"]
    assert lines[-4].endswith("; the fixed contexts below do not")
    missing = report.summary({}, history, None, None, {}, {"unavailable": "no model"}).splitlines()
    assert missing[-2] == "    repeats_fixed_context    unavailable: no model"


def test_fixed_context_repeats_name_a_checkpoint_without_its_model(tmp_path):
    result = report.fixed_context_repeats(None, "unused", tmp_path / "global_step_4", 8, 24, "answer")
    assert result == {"unavailable": f"{tmp_path / 'global_step_4' / 'actor' / 'huggingface'} holds no model "
                                     f"({report.HF_CHECKPOINT_HINT})"}


def _config(**values):
    return OmegaConf.create({"task_name": values.get("task", "tiny"), "drift": {"console": values.get("mode", "auto")},
                             "trainer": {"v1": {"trainer_mode": values.get("trainer", "drift")}}})


@pytest.mark.parametrize("values, mode", [
    ({}, "quiet"),  # the embedded task trained by DRIFT
    ({"trainer": "sync"}, "full"),  # recipe=grpo: verl's trainer draws verl's console
    ({"task": "metamath"}, "full"),  # real tasks keep verl's console
    ({"task": "metamath", "mode": "quiet"}, "quiet"),
    ({"mode": "full"}, "full"),
    ({"mode": "loud"}, "full"),  # the config check names the bad value
])
def test_console_mode(values, mode):
    assert quiet.console_mode(_config(**values)) == mode


def test_each_attempt_gets_its_own_metrics_file_and_readers_join_them(tmp_path, monkeypatch):
    monkeypatch.delenv(run_files.ENV, raising=False)
    config = OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path / "run")},
                               "ray_kwargs": {"ray_init": {"runtime_env": {"py_executable": None}}}})
    OmegaConf.set_struct(config, True)
    first = run_files.place_metrics(config, run_files.run_dir(config))
    assert first == tmp_path / "run" / "metrics.jsonl" and os.environ[run_files.ENV] == str(first)
    assert config.ray_kwargs.ray_init.runtime_env.env_vars[run_files.ENV] == str(first)  # for a joined cluster
    first.write_text("".join(json.dumps({"step": s, "data": {"a": s, "attempt": 1}}) + "\n" for s in (0, 1, 2)))
    monkeypatch.delenv(run_files.ENV)
    second = run_files.place_metrics(config, run_files.run_dir(config))
    assert second == tmp_path / "run" / "metrics.2.jsonl"
    second.write_text("".join(json.dumps({"step": s, "data": {"attempt": 2}}) + "\n" for s in (2, 3))
                      + '{"step": 4, "da')  # cut short by a kill
    (tmp_path / "run" / "metrics.10.jsonl").write_text(json.dumps({"step": 5, "data": {"attempt": 10}}) + "\n")
    assert run_files.next_metrics_file(tmp_path / "run").name == "metrics.11.jsonl"
    steps = read_metrics(tmp_path / "run")
    assert steps == {0: {"a": 0, "attempt": 1}, 1: {"a": 1, "attempt": 1}, 2: {"a": 2, "attempt": 2},
                     3: {"attempt": 2}, 5: {"attempt": 10}}
    monkeypatch.setenv(run_files.ENV, str(tmp_path / "mine.jsonl"))  # the environment's own choice is kept
    assert run_files.place_metrics(config, run_files.run_dir(config)) is None


def test_a_startup_error_on_the_quiet_console_ends_with_its_line_and_the_log(tmp_path):
    """``python -m drift_verl.main`` on the embedded task (quiet) with a verifier that does not load."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(run_files.ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "drift_verl.main", "recipe=drift", "platform=cpu",
         "actor_rollout_ref.model.path=${drift_asset:tiny_model}",
         f"reward.custom_reward_function.path={tmp_path / 'no_such_verifier.py'}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1
    run = tmp_path / "checkpoints" / "drift_verl" / "drift_tiny"
    assert proc.stdout.splitlines()[0] == f"drift-verl: run folder: {run}"
    last = proc.stderr.strip().splitlines()
    assert last[-2] == f"drift-verl: log: {run / 'console.log'}" and (run / "console.log").is_file()
    assert last[-1].startswith("drift-verl: reward.custom_reward_function:") and "does not load" in last[-1]
    assert len(_lines(proc.stdout + proc.stderr)) <= 4


def test_a_bar_shows_on_a_terminal_that_reports_no_size(monkeypatch):
    """A pty nobody sized (``script``, some container shells) reports 0 x 0, and tqdm then hides its bar: the
    reference policy's 5-minute build looked frozen. console.progress gives it room."""
    import pty
    import select
    import tty

    from drift_verl.integration.job import console

    master, slave = pty.openpty()
    tty.setraw(slave)
    assert os.get_terminal_size(slave).columns == 0
    terminal = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", terminal)  # tqdm asks sys.stderr's terminal for its width (as in the build)
    try:  # every step drawn (mininterval 0), and the pty read until it has nothing more
        for _ in console.progress(range(3), desc="reference policy: verl SFT steps", file=sys.stderr, mininterval=0):
            pass
        terminal.flush()
        shown = b""
        while select.select([master], [], [], 0.5)[0]:
            shown += os.read(master, 65536)
        shown = shown.decode()
    finally:
        terminal.close()
        os.close(master)
    assert "reference policy: verl SFT steps: 100%" in shown and "3/3" in shown, repr(shown)
