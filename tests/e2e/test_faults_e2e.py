"""Fault injection on the real stack: one DRIFT run broken seven ways, then resumed to the end.

Faults, in order, each ending a run of the same command (the points inside a phase are drawn from a seed):
the vLLM engine killed in phase 1 (the job must end itself, in bounded time, with one line naming it); SIGKILL
of the whole job after K more shards; SIGKILL in the weight pass; SIGKILL in phase 3 after S updates; the vLLM
engine killed in the middle of the weight sync after checkpoint 4; SIGKILL halfway through writing checkpoint 6.
The last run finishes. Then: nothing lost or duplicated in the store, every shard written before a fault kept
byte for byte, every step trained with the mini-batch the schedule gives it, in every run that trained it.
Finally a truncated shard and a truncated manifest each stop a job with one line naming the file, before Ray starts.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from drift_verl.core.schedule import Schedule, batch_digest
from tests.conftest import FIXTURES, SMALL_TASK, read_metrics, with_fixture_hooks

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

N, PROMPTS, PER_SHARD, MINI_BATCH, WINDOW = 4, 32, 4, 4, 3  # 8 shards: groups shuffled in windows of 3, 3, 2
SHARDS, STEPS = PROMPTS // PER_SHARD, PROMPTS // MINI_BATCH
SEED = int(os.environ.get("DRIFT_FAULT_SEED", "0"))
ARGV = [
    "-m", "drift_verl.main", "recipe=drift", "platform=cpu", *SMALL_TASK,
    f"reward.custom_reward_function.path={FIXTURES / 'digit_reward.py'}", "drift.partial_credit=0.9",
    "trainer.logger=[console,file]",
    f"drift.max_prompts={PROMPTS}", f"drift.prompts_per_shard={PER_SHARD}",
    f"actor_rollout_ref.actor.ppo_mini_batch_size={MINI_BATCH}", f"drift.shuffle_window={WINDOW}",
    "trainer.save_freq=2", "trainer.test_freq=4", "trainer.val_before_train=false",
]


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


class Job:
    """One run of the command in ``workdir``, its own process session, output in ``<name>.log``."""

    def __init__(self, workdir: Path, name: str, argv=(), env=None):
        self.workdir, self.name = workdir, name
        self.mark = workdir / f"{name}.fired"
        self.log = workdir / f"{name}.log"
        env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(workdir / f"{name}.jsonl"),
                   **with_fixture_hooks(DRIFT_FAULT_MARK=str(self.mark), **(env or {})))
        with open(self.log, "w") as out:
            self.process = subprocess.Popen([sys.executable, *ARGV, *argv], cwd=workdir, env=env,
                                            start_new_session=True, stdout=out, stderr=subprocess.STDOUT)

    def wait_until(self, condition, what: str, limit: float = 900) -> None:
        deadline = time.time() + limit
        while not condition():
            assert self.process.poll() is None, f"{self.name}: ended before {what}; see {self.log}"
            assert time.time() < deadline, f"{self.name}: no {what} within {limit} s; see {self.log}"
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the driver, Ray and vLLM: the job's session, then anything Ray left."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)

    def finish(self, limit: float = 900) -> tuple[int, str]:
        try:
            code = self.process.wait(limit)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name}: did not end within {limit} s; see {self.log}") from None
        return code, self.log.read_text()

    def metrics(self) -> dict:
        path = self.workdir / f"{self.name}.jsonl"
        return read_metrics(path) if path.exists() else {}


def _last_failure_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("drift-verl: job failed:")]
    assert lines, output[-3000:]
    return lines[-1]


def _assert_engine_death_reported(job: Job, died_at: float) -> None:
    code, output = job.finish()
    ended = time.time()
    assert code == 1, output[-3000:]
    line = _last_failure_line(output)
    assert "the vLLM engine of rollout server vllm_server_0_0 is dead" in line and Path(line.split("log: ")[1]).is_file()
    assert ended - died_at < 60, f"{job.name}: {ended - died_at:.0f} s from the engine's death to the job's end"


def _shards(store_root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in store_root.glob("*/shard-*.parquet")}


def test_seven_faults_then_resume_lose_nothing_and_keep_the_schedule(tmp_path):
    rng = random.Random(SEED)
    store_root, run_dir = tmp_path / "drift_store", tmp_path / "checkpoints" / "drift_verl" / "drift_tiny"
    report = {"seed": SEED, "faults": [], "lost_or_duplicated": None}
    kept: dict[Path, bytes] = {}

    def check_kept(fault: str | None) -> None:
        now = _shards(store_root)
        assert all(now.get(p) == data for p, data in kept.items()), f"{fault}: a finished shard changed or vanished"
        kept.update(now)
        if fault:
            report["faults"].append(fault)

    # 1. the engine dies mid-rollout: the job ends itself
    job = Job(tmp_path, "f1_engine_rollout")
    job.wait_until(lambda: len(_shards(store_root)) >= 2, "second shard")
    for pid in _engine_pids():
        os.kill(pid, signal.SIGKILL)
    _assert_engine_death_reported(job, time.time())
    check_kept("vLLM engine killed in phase 1")
    assert len(kept) < SHARDS, "the engine should die mid-rollout"

    # 2-4. SIGKILL after K more shards, in the weight pass, after S updates
    more, updates = rng.randint(1, min(2, SHARDS - len(kept))), rng.randint(1, 3)
    for name, point, what in (("f2_rollout", f"rollout:{more}", f"SIGKILL after {more} more shard(s)"),
                              ("f3_weights", "weights", "SIGKILL in the weight pass"),
                              ("f4_update", f"update:{updates}", f"SIGKILL after update {updates}")):
        job = Job(tmp_path, name, env={"DRIFT_FAULT_PAUSE_AT": point})
        job.wait_until(job.mark.exists, f"fault {point}")
        job.kill()
        check_kept(what)
    assert len(kept) == SHARDS  # phase 1 was complete before the weight pass

    # 5. the engine dies in the weight sync after checkpoint 4 (validation at step 4)
    job = Job(tmp_path, "f5_engine_sync", env={"DRIFT_FAULT_KILL_ENGINE_AFTER": str(run_dir / "global_step_4")})
    job.wait_until(job.mark.exists, "the weight sync after checkpoint 4")
    _assert_engine_death_reported(job, float(job.mark.read_text()))
    check_kept("vLLM engine killed in the weight sync")
    assert (run_dir / "latest_checkpointed_iteration.txt").read_text().strip() == "4"

    # 6. SIGKILL halfway through writing checkpoint 6: verl's tracker still says 4
    job = Job(tmp_path, "f6_checkpoint", env={"DRIFT_FAULT_PAUSE_AT": "checkpoint:6"})
    job.wait_until(job.mark.exists, "checkpoint 6")
    job.kill()
    check_kept("SIGKILL while writing checkpoint 6")
    assert (run_dir / "latest_checkpointed_iteration.txt").read_text().strip() == "4"

    # 7. the same command once more: it finishes
    final = Job(tmp_path, "final")
    code, output = final.finish()
    assert code == 0, output[-3000:]
    check_kept(None)
    assert (run_dir / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    assert sorted(s for s, m in final.metrics().items() if "actor/grad_norm" in m) == [5, 6, 7, 8]

    # nothing lost, nothing duplicated
    rows = [row for path in sorted(kept) for row in pq.read_table(path, columns=["prompt_id", "sample"]).to_pylist()]
    ids = [(row["prompt_id"], row["sample"]) for row in rows]
    report["lost_or_duplicated"] = PROMPTS * N - len(set(ids)) + len(ids) - len(set(ids))
    assert report["lost_or_duplicated"] == 0 and len(ids) == PROMPTS * N
    # every step trained on the schedule's mini-batch, in every run that trained it
    (store,) = {p.parent for p in kept}
    sizes = [pq.ParquetFile(store / f"shard-{i:05d}.parquet").metadata.num_rows for i in range(SHARDS)]
    schedule = Schedule.of(PROMPTS, MINI_BATCH, N, WINDOW, epochs=1, rounds=1, seed=0)
    expected = {i + 1: batch_digest(step.picks) for i, step in enumerate(schedule.remaining_steps(sizes, 0, 0))}
    logged = [(step, m["drift/update/batch_digest"]) for log in sorted(tmp_path.glob("*.jsonl"))
              for step, m in read_metrics(log).items() if "drift/update/batch_digest" in m]
    assert {step for step, _ in logged} == set(expected)
    assert all(digest == expected[step] for step, digest in logged), logged
    report["steps_trained_in_all_runs"] = len(logged)

    # damaged store files: a job on the store stops with one line naming the file, before Ray starts
    shard = store / "shard-00003.parquet"
    shard.write_bytes(kept[shard][: len(kept[shard]) // 2])
    manifest, manifest_text = store / "manifest.json", (store / "manifest.json").read_text()
    for name, damage, named in (("c1_shard", lambda: None, shard),
                                ("c2_manifest", lambda: manifest.write_text(manifest_text[:40]), manifest)):
        damage()
        job = Job(tmp_path, name, argv=[f"trainer.default_local_dir={tmp_path / name}", "drift.beta=0.5"])
        code, output = job.finish()
        line = output.strip().splitlines()[-1]
        assert code == 1 and line.startswith(f"drift-verl: {named}: "), output[-3000:]
        verl_log = tmp_path / name / "console.log"
        assert not verl_log.exists() or "ray init kwargs" not in verl_log.read_text(), "Ray started"
        report["faults"].append(f"{name}: clear error")
    report.update(faults_injected=len(report["faults"]), resumed_losslessly=6, clear_errors=2)
    (tmp_path / "fault_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
