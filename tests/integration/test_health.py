"""The job monitor and the trainer's bounded waits, on a real local Ray cluster and verl's real replay buffer."""

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import ray
from omegaconf import OmegaConf
from ray.core.generated import common_pb2
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

from drift_verl.integration.job import health
from drift_verl.integration.job.health import HealthConfig, JobMonitor, Stalled
from drift_verl.integration.training.rollout_io import PolledReplayBuffer, ShardReplayBuffer, ShardRolloutBuffer
from tests.conftest import load_compare

pytestmark = pytest.mark.timeout(300)


def test_health_config_rejects_bad_values():
    assert HealthConfig(poll_s=1).poll_s == 1.0
    with pytest.raises(ValueError, match="drift.health.weight_sync_timeout_s must be a number of seconds > 0"):
        HealthConfig(weight_sync_timeout_s=0)


def _cause(reason: str) -> common_pb2.ActorDeathCause:
    cause = common_pb2.ActorDeathCause()
    cause.actor_died_error_context.reason = common_pb2.ActorDiedErrorContext.Reason.Value(reason)
    cause.actor_died_error_context.error_message = "The actor died unexpectedly.\nmore detail"
    return cause


@pytest.mark.parametrize("reason", ["RAY_KILL", "OUT_OF_SCOPE", "REF_DELETED", "OWNER_DIED"])
def test_actors_ended_on_purpose_or_with_their_owner_are_not_failures(reason):
    assert health.death_reason(_cause(reason)) is None


def test_crashes_and_oom_kills_are_failures():
    assert health.death_reason(_cause("WORKER_DIED")) == "worker died (The actor died unexpectedly.)"
    oom = common_pb2.ActorDeathCause()
    oom.oom_context.error_message = "memory"
    assert "out of memory" in health.death_reason(oom)


def test_bounded_returns_raises_or_times_out():
    assert health.bounded("add", 5, "weight_sync_timeout_s", lambda a, b: a + b, 1, 2) == 3
    with pytest.raises(KeyError):
        health.bounded("lookup", 5, "weight_sync_timeout_s", {}.__getitem__, "x")
    start = time.monotonic()
    with pytest.raises(Stalled, match=r"the weight sync did not finish within 0.3 s \(drift.health.weight_sync"):
        health.bounded("the weight sync", 0.3, "weight_sync_timeout_s", time.sleep, 30)
    assert time.monotonic() - start < 5


def _replay_buffer(monkeypatch, statuses):
    """The trainer's replay buffer on verl's own, bounded at 0.5 s, reading prompt states from ``statuses()``
    instead of TransferQueue."""
    from verl.trainer.ppo.v1 import replay_buffer

    monkeypatch.setattr(replay_buffer.tq, "kv_list",
                        lambda: {"train": {key: {"is_prompt": True, "status": status, "global_steps": 0}
                                           for key, status in statuses().items()}})
    return ShardReplayBuffer(0.5, poll_interval=0.05, trainer_mode="sync", trainer_config=OmegaConf.create({}),
                             max_off_policy_threshold=None, max_off_policy_strategy="drop",
                             sampler_kwargs=OmegaConf.create({}))


def test_replay_buffer_wait_ends_when_no_rollout_moves(monkeypatch):
    buffer = _replay_buffer(monkeypatch, lambda: {"p0": "running"})
    start = time.monotonic()
    with pytest.raises(Stalled, match=r"no rollout finished for \d+ s .*0 pending, 1 running, 0 finished"):
        buffer.sample(global_steps=0, partition_id="train", batch_size=1)
    assert 0.5 <= time.monotonic() - start < 5


def test_replay_buffer_wait_goes_on_while_rollouts_move(monkeypatch):
    start = time.monotonic()

    def statuses():  # a new prompt starts every poll for 1.5 s, then nothing moves
        moving = min(time.monotonic() - start, 1.5)
        return {f"p{i}": "running" for i in range(int(moving / 0.05) + 1)}

    buffer = _replay_buffer(monkeypatch, statuses)
    with pytest.raises(Stalled):
        buffer.sample(global_steps=0, partition_id="train", batch_size=10_000)
    assert time.monotonic() - start >= 2.0  # 1.5 s of progress, then the 0.5 s bound


def test_shard_buffer_is_built_as_verl_builds_its_sync_buffer():
    """The DRIFT trainer builds its buffer itself (verl's ``_build_replay_buffer`` hook); what it passes must be what
    verl's own builder gives a synchronous trainer with the DRIFT recipe's sampler settings."""
    from hydra import compose, initialize_config_module
    from verl.trainer.ppo.v1 import PPOTrainerSync

    with initialize_config_module(config_module="recipes", version_base=None):
        config = compose(config_name="drift_main", overrides=["recipe=drift", "platform=cpu"])

    class Trainer(ShardRolloutBuffer, PPOTrainerSync):
        trainer_mode = "sync"

    trainer = object.__new__(Trainer)  # verl's __init__ would build the whole job: only the builders run
    trainer.config, trainer.health = config, HealthConfig(rollout_stall_timeout_s=7)
    ours, verls = trainer._build_replay_buffer(), PPOTrainerSync._build_replay_buffer(trainer)
    assert type(verls) is ReplayBuffer and isinstance(ours, ReplayBuffer)
    for name in ("trainer_mode", "trainer_config", "max_off_policy_threshold", "max_off_policy_strategy",
                 "sampler_kwargs", "refill_fn", "filter_groups_metric", "sync_refill_failed_groups"):
        assert getattr(ours, name) == getattr(verls, name), name
    assert (ours.poll_interval, ours.stall_timeout_s) == (0.5, 7.0)


def test_grpo_on_task_tiny_long_polls_rollouts_as_drift_does_through_verls_custom_sampler():
    """The rollout-heavy regime's GRPO (recipe=grpo task=tiny_long) gets its buffer from verl's own builder, through
    ``trainer.v1.sampler.custom_sampler``: verl's synchronous buffer with the settings verl gives it, polled every
    0.5 s instead of verl's 2 s. task=tiny keeps verl's buffer as it is."""
    from hydra import compose, initialize_config_module
    from verl.trainer.ppo.v1 import PPOTrainerSync

    def built(task: str):
        with initialize_config_module(config_module="recipes", version_base=None):
            config = compose(config_name="drift_main", overrides=["recipe=grpo", f"task={task}", "platform=cpu"])
        trainer = object.__new__(PPOTrainerSync)  # only verl's builder runs
        trainer.config, trainer.trainer_mode = config, "sync"
        trainer._add_prompts_to_generate = lambda count: count
        return trainer._build_replay_buffer()

    long, tiny = built("tiny_long"), built("tiny")
    assert type(long) is PolledReplayBuffer and type(tiny) is ReplayBuffer
    assert (long.poll_interval, tiny.poll_interval) == (0.5, 2.0)
    # the report's bound on the poll's bias reads each regime's poll from its plan: it must be the one the job uses
    regimes = load_compare().REGIMES
    assert (regimes["rollout_heavy"].plan.grpo_poll_s, regimes["main"].plan.grpo_poll_s) == (0.5, 2.0)
    for name in ("trainer_mode", "trainer_config", "max_off_policy_threshold", "max_off_policy_strategy",
                 "filter_groups_metric", "sync_refill_failed_groups"):
        assert getattr(long, name) == getattr(tiny, name), name


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@ray.remote(num_cpus=0)
class Sleeper:
    def pid(self) -> int:
        return os.getpid()


def test_monitor_names_a_crashed_actor_and_its_log_but_not_one_killed_on_purpose(local_ray):
    monitor = JobMonitor(HealthConfig())
    quitter = Sleeper.options(name="quitter").remote()
    ray.get(quitter.pid.remote())
    ray.kill(quitter)
    crasher = Sleeper.options(name="crasher").remote()
    pid = ray.get(crasher.pid.remote())
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while time.time() < deadline and (line := monitor.check()) is None:
        time.sleep(0.5)
    assert line.startswith(f"Ray actor crasher (pid {pid}) died: worker died"), line
    assert line.rsplit("log: ", 1)[1].endswith(f"-{pid}.err") and os.path.isfile(line.rsplit("log: ", 1)[1])
    assert "quitter" not in line


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802  (http.server's name)
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@ray.remote(num_cpus=0)
class RolloutServer:
    """Answers the monitor the way verl's vLLM server actor does: its HTTP address."""

    def __init__(self, port: int):
        self.port = port

    def get_server_address(self):
        return "127.0.0.1", self.port


def test_monitor_reads_vllm_health_answers(local_ray):
    """vLLM's /health contract: 200 while the engine lives, 503 once it is dead; no answer at all for longer
    than engine_unresponsive_s counts as wedged."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    actor = RolloutServer.options(name="vllm_server_7_0").remote(server.server_address[1])
    try:
        monitor = JobMonitor(HealthConfig(engine_unresponsive_s=5))
        assert monitor._dead_engines(time.monotonic()) is None
        _Health.status = 500  # not vLLM's "engine dead": only no answer for engine_unresponsive_s would count
        assert monitor._dead_engines(time.monotonic()) is None
        _Health.status = 503
        line = monitor._dead_engines(time.monotonic())
        assert line.startswith("the vLLM engine of rollout server vllm_server_7_0 is dead (its /health answers 503)")
        server.shutdown()
        server.server_close()
        now = time.monotonic()
        assert monitor._dead_engines(now) is None  # no answer yet within the bound
        assert "has not answered for" in monitor._dead_engines(now + 10)
    finally:
        _Health.status = 200
        ray.kill(actor)


def test_a_note_goes_before_the_log_path_which_stays_the_last_field():
    line = "the vLLM engine of rollout server s is dead (503); log: /tmp/x.err"
    noted = health.with_note(line, "the run did not stop within 30 s: exiting")
    assert noted.endswith("; log: /tmp/x.err") and "(the run did not stop within 30 s: exiting)" in noted
    assert health.with_note("no log here", "n") == "no log here (n)"


def test_the_interrupt_wakes_a_main_thread_blocked_in_a_wait():
    """A lock wait ignores ``_thread.interrupt_main``'s flag until it returns; the monitor's signal wakes it."""
    blocked, place = threading.Event(), []

    def interrupt():
        place.append(health.main_thread_place())
        health.interrupt_main_thread()

    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, as in a job's driver
    try:
        threading.Timer(0.5, interrupt).start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            blocked.wait(30)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 10
    assert re.fullmatch(r".+\.py:\d+ in \w+", place[0]), place  # the note names where the main thread was


_ENTRY_POINT = """
import sys, threading
import hydra

@hydra.main(config_path=sys.argv.pop(1), config_name=sys.argv.pop(1), version_base=None)
def main(config):
    print("monitor threads:", sum(t.name == "drift-job-monitor" for t in threading.enumerate()))

main()
"""


@pytest.mark.parametrize("config_path, config_name, overrides, monitors", [
    # python -m verl.trainer.main_ppo +recipe=...: the recipe's Hydra callback starts the monitor for the job
    ("pkg://verl.trainer.config", "ppo_trainer", ["+recipe=grpo", "+task=tiny"], 1),
    # python -m drift_verl.main: drift_verl/main.py starts its own around verl's run_ppo, not the callback
    ("pkg://recipes", "drift_main", ["recipe=grpo"], 0),
])
def test_the_recipes_hydra_callback_monitors_verls_entry_point(tmp_path, config_path, config_name, overrides,
                                                               monitors):
    """Hydra's real job machinery, with a task function in place of the entry point's body (which would start Ray)."""
    proc = subprocess.run([sys.executable, "-c", "import verl\n" + _ENTRY_POINT, config_path, config_name,
                           *overrides, f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"monitor threads: {monitors}"

