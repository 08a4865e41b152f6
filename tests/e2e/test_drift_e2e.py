"""DRIFT end to end on the real stack: phases 1-3, store reuse across a beta sweep, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from tests.conftest import FIXTURES, SMALL_TASK, read_metrics, run_job, tail
from tests.fixtures.chaos_verifier import expected_reward

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

N, PROMPTS = 4, 64
DRIFT = [
    "-m", "drift_verl.main", "recipe=drift", "platform=cpu",
    f"reward.custom_reward_function.path={FIXTURES / 'chaos_verifier.py'}",
    "drift.env.verifier_timeout_s=0.5",
    "trainer.logger=[console,file]",
    *SMALL_TASK,
]


def _store_rows(store_root: Path) -> tuple[Path, list[dict]]:
    (store,) = [p for p in store_root.iterdir() if p.is_dir()]
    rows = []
    for shard in sorted(store.glob("shard-*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return store, rows


@pytest.fixture(scope="module")
def drift_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("drift")
    proc, metrics = run_job([*DRIFT, f"drift.store_dir={workdir / 'store'}"], workdir)
    assert proc.returncode == 0, tail(proc)
    return workdir, proc, metrics


def test_three_phases_complete(drift_run):
    workdir, proc, metrics = drift_run
    logged = {k for step in metrics.values() for k in step}
    # phase 1, 2, 3 and validation, all through verl's tracker
    assert {"drift/rollout/trajectories_per_s", "drift/reference/solved_within_5"} <= logged
    assert {"drift/weights/ess_fraction_mean", "drift/weights/all_fail_group_share"} <= logged
    steps_per_epoch = PROMPTS * N // (4 * N)
    assert metrics[steps_per_epoch]["training/global_step"] == steps_per_epoch
    assert all(metrics[s]["actor/grad_norm"] > 0 for s in range(1, steps_per_epoch + 1))
    assert any(k.startswith("val-core/") for k in metrics[0]) and any(k.startswith("val-core/") for k in metrics[16])
    assert metrics[0]["drift/rollout/verifier_failures"] > 0  # raised/hung verifiers counted, run went on
    output = proc.stdout + proc.stderr
    assert "DRIFT finished" in output
    for line in ("solved_within_1", "solved_within_5", "non_repeat_ratio", "trajectory store:", "plots:"):
        assert line in output.split("DRIFT finished")[1], line  # the summary: before -> after, and where things are
    plots = workdir / "checkpoints" / "drift_verl" / "drift_tiny" / "plots"
    assert (plots / "round0_weights.png").stat().st_size > 0
    assert (plots / "round0_reference_by_turn.png").stat().st_size > 0


def test_feedback_loop_records_turns_masks_and_stops_at_first_correct(drift_run, tiny_model_path):
    workdir, _, _ = drift_run
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    _, rows = _store_rows(workdir / "store")
    assert len(rows) == PROMPTS * N
    feedback = tokenizer("<|im_start|>user\nIncorrect. Please think again.<|im_end|>")["input_ids"]
    multi_turn = 0
    for row in rows:
        response, mask, spans = row["response_ids"], row["response_mask"], row["turn_spans"]
        assert len(spans) == len(row["turn_rewards"]) == len(row["answers"])
        texts = [tokenizer.decode(response[s:e], skip_special_tokens=True) for s, e in spans]
        # the verifier's verdict per turn (raise / hang -> 0), as the agent loop recorded it
        assert row["turn_rewards"] == [expected_reward(t) for t in texts]
        # stops at the first correct answer; every earlier turn was wrong
        solved = [i for i, r in enumerate(row["turn_rewards"]) if r == 1.0]
        assert row["t_star"] == (solved[0] + 1 if solved else 0)
        assert not solved or solved[0] == len(spans) - 1
        # only assistant tokens are trainable; the gaps between turns are the feedback message
        assert sum(mask) == sum(e - s for s, e in spans) and all(all(mask[s:e]) for s, e in spans)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            gap = response[end:start]
            assert not any(mask[end:start]) and any(gap[i:i + len(feedback)] == feedback for i in range(len(gap)))
        multi_turn += len(spans) > 1
    assert multi_turn > 0


def test_store_is_reused_by_a_beta_sweep(drift_run, tmp_path):
    workdir, _, first = drift_run
    store, rows_before = _store_rows(workdir / "store")
    stamps = {p: p.stat().st_mtime_ns for p in store.glob("shard-*.parquet")}
    proc, metrics = run_job(
        [*DRIFT, f"drift.store_dir={workdir / 'store'}", "drift.beta=0.5", "trainer.val_before_train=false",
         "trainer.test_freq=-1"],
        tmp_path,
    )
    assert proc.returncode == 0, tail(proc)
    step0 = metrics[0]
    assert step0["drift/rollout/new_trajectories"] == 0 and step0["drift/rollout/reused_shards"] == 4
    assert {p: p.stat().st_mtime_ns for p in store.glob("shard-*.parquet")} == stamps
    # a different beta gives different weights from the same trajectories
    assert step0["drift/weights/max"] != first[0]["drift/weights/max"]


def _engine_pids() -> list[int]:
    """The vLLM engine-core processes on this machine (vLLM titles them ``VLLM::EngineCore``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"VLLM::EngineCore"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _run_until_engine_dies(argv: list[str], workdir: Path, name: str, kill_when=None, env=None):
    """Run a job in which the vLLM engine dies: killed here (SIGKILL) once ``kill_when()`` holds, or by the fault
    fixture (``env``). Returns (exit code, output, seconds from the engine's death to the job's exit)."""
    log = workdir / f"{name}.log"
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(workdir / f"{name}.jsonl"), **(env or {}))
    with open(log, "w") as out:
        job = subprocess.Popen([sys.executable, *argv], cwd=workdir, env=env, start_new_session=True,
                               stdout=out, stderr=subprocess.STDOUT)
    killed_at = None
    try:
        deadline = time.time() + 600
        while job.poll() is None and time.time() < deadline:
            if kill_when is not None and killed_at is None and kill_when():
                pids = _engine_pids()
                assert pids, "no vLLM engine process to kill"
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
            time.sleep(0.5)
        ended_at = time.time()
        assert job.poll() is not None, f"the job did not end within 600 s; see {log}"
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    if killed_at is None:
        mark = workdir / f"{name}.killed_at"
        assert mark.exists(), f"the fault was never injected; see {log}"
        killed_at = float(mark.read_text())
    return job.returncode, log.read_text(), ended_at - killed_at


def _assert_ended_by_the_monitor(code: int, output: str, seconds: float) -> None:
    """Non-zero, within the bound, and the last line names the dead engine and a log file that exists."""
    assert code != 0, output[-3000:]
    assert seconds < 60, f"the job took {seconds:.0f} s to end after the engine died"
    last = [line for line in output.splitlines() if line.startswith("drift-verl: job failed:")][-1]
    assert "the vLLM engine of rollout server vllm_server_0_0 is dead" in last, last
    assert Path(last.rsplit("log: ", 1)[1]).is_file(), last


def test_iterative_rounds_use_the_updated_policy_as_reference(tmp_path):
    proc, metrics = run_job(
        [*DRIFT, f"drift.store_dir={tmp_path / 'store'}", "drift.rounds=2", "drift.max_prompts=16",
         "drift.prompts_per_shard=1", "drift.shards_in_flight=3",  # a mini-batch spans 4 shards
         "trainer.val_before_train=false"],
        tmp_path,
    )
    assert proc.returncode == 0, tail(proc)
    for store in (tmp_path / "store").iterdir():  # shards finish out of order: each still holds its own prompt
        for i in range(16):
            rows = pq.read_table(store / f"shard-{i:05d}.parquet", columns=["prompt_id", "sample"]).to_pylist()
            assert [(r["prompt_id"], r["sample"]) for r in rows] == [(f"train-{i}", s) for s in range(N)]
    steps_per_round = 16 * N // (4 * N)
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "store").glob("*/manifest.json")]
    rounds = sorted(m["spec"]["round"] for m in manifests)
    assert rounds == [0, 1]
    second = next(m for m in manifests if m["spec"]["round"] == 1)
    assert second["spec"]["reference"]["step"] == steps_per_round  # the policy that ended round 0
    checkpoints = tmp_path / "checkpoints" / "drift_verl" / "drift_tiny"
    assert (checkpoints / f"global_step_{steps_per_round}").is_dir()
    assert (checkpoints / f"global_step_{2 * steps_per_round}").is_dir()
    assert metrics[steps_per_round]["drift/rollout/new_trajectories"] == 16 * N  # round 1 rolled out anew


@pytest.mark.timeout(1500)
def test_dead_engine_ends_the_job_in_rollout_and_in_weight_sync_and_reruns_resume_without_loss(tmp_path):
    """The engine dies mid-rollout (killed), then in the weight sync after the first checkpoint (fault fixture);
    each time the job ends itself with one line, and each re-run goes on from the store / checkpoint."""
    store_root = tmp_path / "store"
    checkpoints = tmp_path / "checkpoints" / "drift_verl" / "drift_tiny"
    argv = [*DRIFT, f"drift.store_dir={store_root}", "drift.max_prompts=32", "drift.prompts_per_shard=4",
            "trainer.save_freq=4", "trainer.test_freq=4", "trainer.val_before_train=false"]
    result = _run_until_engine_dies(argv, tmp_path, "kill1",
                                    kill_when=lambda: len(list(store_root.glob("*/shard-*.parquet"))) >= 2)
    _assert_ended_by_the_monitor(*result)
    store, _ = _store_rows(store_root)
    kept = {p: p.read_bytes() for p in store.glob("shard-*.parquet")}
    assert 2 <= len(kept) < 8, "the engine should die mid-rollout"

    tracker = checkpoints / "latest_checkpointed_iteration.txt"
    fault = {"PYTHONPATH": os.pathsep.join([str(FIXTURES / "faults"), os.environ.get("PYTHONPATH", "")]),
             "DRIFT_FAULT_KILL_ENGINE_AFTER": str(tracker), "DRIFT_FAULT_MARK": str(tmp_path / "kill2.killed_at")}
    _assert_ended_by_the_monitor(*_run_until_engine_dies(argv, tmp_path, "kill2", env=fault))
    assert tracker.read_text().strip() == "4"
    second = read_metrics(tmp_path / "kill2.jsonl")
    assert second[0]["drift/rollout/reused_shards"] == len(kept)
    assert second[0]["drift/rollout/new_trajectories"] == (32 - 4 * len(kept)) * N
    assert all(p.read_bytes() == data for p, data in kept.items())  # finished shards untouched
    _, rows = _store_rows(store_root)
    ids = [(row["prompt_id"], row["sample"]) for row in rows]
    assert len(ids) == len(set(ids)) == 32 * N  # nothing lost, nothing duplicated
    assert sorted({row["prompt_id"] for row in rows}) == sorted(f"train-{i}" for i in range(32))
    assert not list(store.glob("*.tmp"))

    proc, metrics = run_job(argv, tmp_path)
    assert proc.returncode == 0, tail(proc)
    # the store was complete and the round had started: no new rollouts, training goes on at step 5
    assert metrics[4]["drift/rollout/new_trajectories"] == 0
    assert sorted(s for s in metrics if "actor/grad_norm" in metrics[s]) == [5, 6, 7, 8]
    assert (checkpoints / "global_step_8").is_dir()
