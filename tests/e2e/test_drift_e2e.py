"""DRIFT end to end on the real stack: phases 1-3, the store reused (by verl's entry point, at another beta, as an
import), phase switches, iterative rounds. Each job costs 2-3 minutes of start-up on 2 cores, so each test
checks all its job can show."""

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from drift_verl.core.environment import HigherLower
from drift_verl.core.identity import content_identity
from drift_verl.tiny import assets
from drift_verl.tiny.assets import tiny_model
from tests.conftest import FIXTURES, SMALL_TASK, import_rows, run_job, tail, with_fixture_hooks
from tests.fixtures.chaos_verifier import expected_reward

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

N, PROMPTS = 4, 64
DRIFT = [
    "-m", "drift_verl.main", "recipe=drift", "platform=cpu",
    f"reward.custom_reward_function.path={FIXTURES / 'chaos_verifier.py'}",
    "drift.env.verifier_timeout_s=0.5",
    "trainer.logger=[console,file]",
    "actor_rollout_ref.actor.ppo_mini_batch_size=4",  # 4 prompts x N per step: 16 steps an epoch
    *SMALL_TASK,
]


LR_SCHEDULE = ["actor_rollout_ref.actor.optim.lr_scheduler_type=cosine", "actor_rollout_ref.actor.optim.min_lr_ratio=0.1",
               "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.25"]


def _store_rows(store_root: Path) -> tuple[Path, list[dict]]:
    (store,) = [p for p in store_root.iterdir() if p.is_dir()]
    rows = []
    for shard in sorted(store.glob("shard-*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return store, rows


@pytest.fixture(scope="module")
def drift_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("drift")
    proc, metrics = run_job([*DRIFT, f"drift.store_dir={workdir / 'store'}", "trainer.test_freq=8",
                             "trainer.log_val_generations=2", *LR_SCHEDULE],
                            workdir, env=with_fixture_hooks(DRIFT_RECORD_LIFECYCLE=str(workdir / "lifecycle.txt")))
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


def test_lr_schedule_spans_drift_steps(drift_run):
    """verl would size the schedule from trainer.total_training_steps (2 for the tiny task); DRIFT's 16 steps set
    it: a warm-up of 0.25 x 16 = 4 steps, then a cosine down to min_lr_ratio at the last step."""
    _, _, metrics = drift_run
    lrs = [metrics[step]["actor/lr"] for step in range(1, 17)]
    assert lrs[:4] == pytest.approx([0.25e-3, 0.5e-3, 0.75e-3, 1e-3])  # warm-up: exactly 4 steps to the peak
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))  # then decaying every step
    assert lrs[-1] == pytest.approx(0.1 * 1e-3)  # at min_lr_ratio x lr on DRIFT's last step, not before


def test_rollout_replicas_sleep_while_the_actor_trains(drift_run):
    """verl's lifecycle on CPU through the calls it makes (sleep mode itself does not exist on CPU): verl's start
    (asleep, then woken with the weights), awake for validation and phase 1 without another sync, asleep for the
    weight pass and the update, woken with the new weights for each validation, asleep again while training
    goes on."""
    workdir, _, _ = drift_run
    calls = (workdir / "lifecycle.txt").read_text().split("\n")[:-1]
    assert calls == ["sleep", "update_weights 0", "sleep", "update_weights 8", "sleep", "update_weights 16"], calls


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


def test_iterative_rounds_use_the_updated_policy_as_reference(tmp_path):
    proc, metrics = run_job(
        [*DRIFT, f"drift.store_dir={tmp_path / 'store'}", "drift.rounds=2", "drift.max_prompts=16",
         "data.train_max_samples=-1",  # the first 16 rows of the data file: train-0 .. train-15
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


def _digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_rollout_only_makes_the_full_runs_store_and_stops(drift_run, tmp_path):
    """drift.phases=[rollouts] makes the store (the full run's configuration: the same fingerprint) and stops: no
    update, no validation, no checkpoint. Training from a store alone: the copied-store and imported-store tests."""
    workdir, _, _ = drift_run
    full_store, _ = _store_rows(workdir / "store")
    proc, rolled = run_job([*DRIFT, f"drift.store_dir={tmp_path / 'store'}", "drift.phases=[rollouts]"], tmp_path / "a")
    assert proc.returncode == 0, tail(proc)
    store, rows = _store_rows(tmp_path / "store")
    assert store.name == full_store.name and len(rows) == PROMPTS * N  # the same configuration's store, complete
    assert rolled[0]["drift/rollout/new_trajectories"] == PROMPTS * N
    assert not any("training/global_step" in m or any(k.startswith("val-") for k in m) for m in rolled.values())
    assert not list((tmp_path / "a").rglob("global_step_*"))  # no update, no checkpoint (the run folder holds its logs)
    assert "trajectory store:" in proc.stdout.split("DRIFT finished")[1]


# verl options users set, on top of DRIFT's update: with them a job must train the very steps of a plain one
OPTIONS = [
    "actor_rollout_ref.actor.use_dynamic_bsz=true", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=384",
    "actor_rollout_ref.model.use_remove_padding=true", "actor_rollout_ref.model.enable_gradient_checkpointing=false",
    "trainer.logger=[console,file,tensorboard,wandb]",
]


def test_verls_entry_point_and_options_run_the_same_job_on_the_stored_rollouts(drift_run, tmp_path):
    """README "Running": ``python -m verl.trainer.main_ppo +recipe=drift +task=tiny +platform=cpu`` composes the job
    ``drift_verl.main`` runs: the store's fingerprint hashes the composed config, so it finds the full run's store
    complete and rolls nothing out (its shards untouched), and it trains the same steps, through verl's own
    TaskRunner (trainer mode ``drift`` registered by the plugin's import hook) and the recipes' Hydra callbacks (the
    cpu platform, the job monitor). With verl options users set on top (dynamic batch size, padding removal,
    gradient checkpointing off, the tensorboard and offline wandb loggers): the same steps still, float32 sums in
    another order aside (2e-5 measured). The trajectories' weights differ (the chaos verifier's rewards vary), so
    a weight that reached the wrong tokens would change the loss."""
    workdir, _, full = drift_run
    store, _ = _store_rows(workdir / "store")
    stamps = {p: p.stat().st_mtime_ns for p in store.glob("shard-*.parquet")}
    main_ppo = ["-m", "verl.trainer.main_ppo", "+recipe=drift", "+task=tiny", "+platform=cpu", *DRIFT[4:]]
    env = {"TENSORBOARD_DIR": str(tmp_path / "tensorboard"), "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    proc, trained = run_job([*main_ppo, f"drift.store_dir={workdir / 'store'}", "trainer.test_freq=8",
                             "trainer.log_val_generations=2", *LR_SCHEDULE, *OPTIONS], tmp_path, env=env)
    assert proc.returncode == 0, tail(proc)
    assert trained[0]["drift/rollout/new_trajectories"] == 0 and trained[0]["drift/rollout/reused_shards"] == 4
    assert {p: p.stat().st_mtime_ns for p in store.glob("shard-*.parquet")} == stamps
    steps = [s for s, m in full.items() if "training/global_step" in m]
    assert steps == [s for s, m in trained.items() if "training/global_step" in m]
    for step in steps:
        for key in ("actor/pg_loss", "actor/grad_norm", "actor/drift/nll"):
            assert trained[step][key] == pytest.approx(full[step][key], rel=1e-4), (step, key)
    # the weights count: some step's weighted loss is off its unweighted NLL by 10x the tolerance above (one step's
    # can be within it: the NLL of a step's trajectories can be near equal, 6e-4 apart on CI for step 1)
    assert any(full[s]["actor/pg_loss"] != pytest.approx(full[s]["actor/drift/nll"], rel=1e-3) for s in steps)
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*")), "no tensorboard event file"
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb")), "no offline wandb run"


def test_a_beta_sweep_trains_from_a_copied_store_without_rolling_out(drift_run, tmp_path):
    """The full run's store copied into another store folder and trained with drift.phases=[weights,update] at
    another beta: nothing rolled out or rewritten, the full run's steps, other weights from the same
    trajectories."""
    import shutil

    workdir, _, full = drift_run
    full_store, _ = _store_rows(workdir / "store")
    copy = shutil.copytree(full_store, tmp_path / "store" / full_store.name)
    before = _digests(copy)
    proc, trained = run_job([*DRIFT, f"drift.store_dir={tmp_path / 'store'}", "drift.phases=[weights,update]",
                             "drift.beta=0.5", "trainer.val_before_train=false", "trainer.test_freq=-1"],
                            tmp_path / "run")
    assert proc.returncode == 0, tail(proc)
    assert _digests(copy) == before
    assert "drift/rollout/new_trajectories" not in trained[0] and trained[0]["drift/reference/solved_within_5"] >= 0
    steps = sorted(s for s, m in full.items() if "training/global_step" in m)
    assert sorted(s for s, m in trained.items() if "training/global_step" in m) == steps
    assert all(trained[s]["actor/grad_norm"] > 0 for s in steps)
    assert trained[0]["drift/weights/max"] != pytest.approx(full[0]["drift/weights/max"])


def test_a_store_from_another_tokenizer_is_refused_before_ray_starts(drift_run, tmp_path, tiny_model_path):
    import shutil

    workdir, _, _ = drift_run
    store, _ = _store_rows(workdir / "store")
    model = shutil.copytree(tiny_model_path, tmp_path / "model")
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    argv = [arg for arg in DRIFT if not arg.startswith("actor_rollout_ref.model.path=")]
    proc, _ = run_job([*argv, f"actor_rollout_ref.model.path={model}", f"drift.store={store}",
                       "drift.phases=[weights,update]"], tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "tokenised with another tokenizer or chat template" in proc.stderr, tail(proc)
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr


def test_an_imported_store_trains_with_the_runs_weights(drift_run, tmp_path):
    """The run's trajectories exported in the reference implementation's format (messages and rewards only),
    imported (``python -m drift_verl.store import``) and trained with drift.phases=[weights,update]: the run's
    steps and weights. (This run's untrained model writes text that does not survive decoding, so its tokens are
    not compared here: tests/e2e/test_main_job_e2e.py does that on the reference policy's conversations.)"""
    workdir, _, full = drift_run
    _, rows = _store_rows(workdir / "store")
    imported = import_rows(rows, tmp_path, tiny_model())
    imported_rows = _store_rows(imported.parent)[1]
    fields = ["prompt_id", "sample", "prompt_ids", "turn_rewards", "answers", "t_star"]
    assert [[r[k] for k in fields] for r in imported_rows] == [[r[k] for k in fields] for r in rows]
    # re-encoding the untrained model's decoded bytes takes more tokens than it sampled: room for the longest
    longest = max(json.loads((imported / "manifest.json").read_text())["spec"]["lengths"][1], 192)
    proc, trained = run_job([*DRIFT, f"drift.store={imported}", "drift.phases=[weights,update]", *LR_SCHEDULE,
                             f"data.max_response_length={longest}", f"actor_rollout_ref.rollout.max_model_len={longest + 96}"],
                            tmp_path)
    assert proc.returncode == 0, tail(proc)
    steps = sorted(s for s, m in full.items() if "training/global_step" in m)
    assert sorted(s for s, m in trained.items() if "training/global_step" in m) == steps
    assert all(trained[s]["actor/grad_norm"] > 0 for s in steps)
    for key in ("drift/weights/max", "drift/weights/ess_fraction_mean", "drift/reference/solved_within_5"):
        assert trained[0][key] == pytest.approx(full[0][key]), key


def _on_verls_loop(tmp_path, loop: str, prompts: int, per_step: int, *extra: str):
    """One DRIFT round on verl's agent loop ``loop``: (the finished job, its metrics, its store rows, the loop its
    store's spec names)."""
    proc, metrics = run_job(
        ["-m", "drift_verl.main", "recipe=drift", "platform=cpu", "trainer.logger=[console,file]", *SMALL_TASK,
         f"actor_rollout_ref.rollout.agent.default_agent_loop={loop}", f"drift.max_prompts={prompts}",
         f"actor_rollout_ref.actor.ppo_mini_batch_size={per_step}", f"drift.store_dir={tmp_path / 'store'}", *extra],
        tmp_path)
    assert proc.returncode == 0, tail(proc)
    store, rows = _store_rows(tmp_path / "store")
    return proc, metrics, rows, json.loads((store / "manifest.json").read_text())["spec"]["agent_loop"]


def test_verls_single_turn_agent_feeds_the_store_and_trains(tmp_path):
    """recipe=drift on verl's own single_turn_agent: one assistant message per trajectory, its reward from verl's
    reward loop (the task's verifier); one round rolls out, weighs and trains; what needs the feedback loop's
    fields is absent or unavailable, never zero."""
    proc, metrics, rows, agent_loop = _on_verls_loop(tmp_path, "single_turn_agent", 16, 4, "trainer.test_freq=4")
    assert agent_loop == {"name": "single_turn_agent", "tools": []}
    assert len(rows) == 16 * N
    for row in rows:
        assert len(row["turn_spans"]) == 1 and row["turn_spans"][0][1] == len(row["response_mask"]), row["turn_spans"]
        assert len(row["turn_rewards"]) == 1 and row["answers"] == [] and row["messages"] == ""
    logged = {k for step in metrics.values() for k in step}
    assert {"drift/reference/solved", "drift/reference/mean_reward"} <= logged
    assert not any(k.startswith("drift/reference/solved_within") for k in logged)
    assert all(metrics[s]["actor/grad_norm"] > 0 for s in range(1, 5))
    summary = (proc.stdout + proc.stderr).split("DRIFT finished")[1]
    assert "step 0 -> step 4: reward" in summary and "per-turn metrics unavailable" in summary
    plots = tmp_path / "checkpoints" / "drift_verl" / "drift_tiny" / "plots"
    assert (plots / "round0_weights.png").exists() and not (plots / "round0_reference_by_turn.png").exists()


def test_verls_tool_agent_with_a_function_tool_feeds_the_store_and_trains(tmp_path):
    """recipe=drift on verl's own tool_agent with a function tool (tests/fixtures/calculator_tool.py): verl's
    ToolAgentLoop rolls out through the vLLM server, every trajectory becomes a valid store row (its turns the runs
    of response_mask, the feedback loop's fields absent), the tool file is part of the store's identity, and one
    round trains. The tiny chat template does not render tool schemas and the untrained policy makes no call, so
    this checks the wiring; the conversion of a real tool call (tool output as context) is
    tests/integration/test_verl_loops.py's, with verl's ToolAgentLoop and a scripted server."""
    tool = FIXTURES / "calculator_tool.py"
    proc, metrics, rows, agent_loop = _on_verls_loop(
        tmp_path, "tool_agent", 8, 2, f"actor_rollout_ref.rollout.multi_turn.function_tool_path={tool}",
        "trainer.val_before_train=False")
    assert agent_loop == {"name": "tool_agent", "tools": [content_identity(str(tool))]}
    assert len(rows) == 8 * N
    for row in rows:
        mask, spans = row["response_mask"], row["turn_spans"]
        runs = [[i, j] for i, j in _runs_of_ones(mask)]
        assert spans == runs and len(row["turn_rewards"]) == 1, (spans, runs)
        assert row["answers"] == [] and row["messages"] == "" and row["format_penalty"] == 0  # absent, not data
        assert row["t_star"] in (0, len(spans))
    assert all(metrics[s]["actor/grad_norm"] > 0 for s in range(1, 5))
    assert "DRIFT finished" in proc.stdout + proc.stderr


def _runs_of_ones(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of 1s: an independent oracle for the turns of another loop than drift_feedback."""
    runs, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_the_informative_task_rolls_out_higher_lower_with_graded_rewards_and_trains(tmp_path, tiny_model_path):
    """task=tiny_informative with the graded verifier (README "Informative feedback"): the reference fine-tuned to
    use higher_lower, every feedback message in the store the one higher_lower gives that turn's answer, graded
    near-misses recorded per turn and counted once through drift.partial_credit; one round trains."""
    proc, metrics = run_job(
        ["-m", "drift_verl.main", "recipe=drift", "task=tiny_informative", "platform=cpu",
         "trainer.logger=[console,file]", "reward.custom_reward_function.path=pkg://reward_fns.distance",
         "drift.partial_credit=0.5", "drift.max_prompts=16", "actor_rollout_ref.rollout.n=4",
         "actor_rollout_ref.actor.ppo_mini_batch_size=4", "drift.epochs=1", "drift.non_repeat_contexts=0",
         "data.val_max_samples=16", "actor_rollout_ref.rollout.val_kwargs.n=1",
         "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra]",
         f"drift.store_dir={tmp_path / 'store'}", "trainer.val_before_train=False"],
        tmp_path)
    assert proc.returncode == 0, tail(proc)
    store, rows = _store_rows(tmp_path / "store")
    spec = json.loads((store / "manifest.json").read_text())["spec"]
    assert spec["env"]["name"] == "higher_lower"
    assert spec["reference"] == content_identity(assets.tiny_reference_informative())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    said = {"high": 0, "low": 0}
    env = HigherLower(SimpleNamespace(options={}))
    for row in rows:
        response, spans = row["response_ids"], row["turn_spans"]
        env.reset(row)
        for turn, ((_, end), (start, _)) in enumerate(zip(spans, spans[1:])):
            feedback = tokenizer.decode(response[end:start], skip_special_tokens=True)
            answer = row["answers"][turn]
            expected = env.step("", answer, 0.0, turn + 1)  # what higher_lower says to that answer
            heard = [message for message in HigherLower.DEFAULTS.values() if message in feedback]
            assert heard == [expected], (feedback, answer, row["ground_truth"])  # that message, and only it
            side = next(key for key, message in HigherLower.DEFAULTS.items() if message == expected)
            said[side] = said.get(side, 0) + 1
        assert all(0 <= r <= 1 for r in row["turn_rewards"])
    assert said["high"] > 0 and said["low"] > 0
    assert any(0 < r < 1 for row in rows for r in row["turn_rewards"])  # graded near-misses, not 0/1
    assert all(metrics[s]["actor/grad_norm"] > 0 for s in range(1, 5))
    assert "DRIFT finished" in proc.stdout + proc.stderr
