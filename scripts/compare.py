"""The paper's comparison in miniature, on the embedded tiny task, as a protocol whose verdict can be trusted:
every method is tuned with the same budget on dev problems, the chosen settings run on unseen test problems
with 5 seeds, and DRIFT's differences come with 95% confidence intervals.

    python scripts/compare.py [--phase dev|test|report|all]
        [--regime main|informative|informative_graded|rollout_heavy] [--dry-run] [--out docs/comparison]
        [--workdir runs/compare] [--grid-points 4] [--seeds 5] [--dev-samples 8] [--test-samples 16]
        [--grpo-max-steps 64] [--grpo-dev-freq 16] [--skip-non-repeat]
    (the size flags' defaults are the main protocol's; a regime may have its own: ``Regime.flags``)

Protocol:

1. Methods: ``sft_uniform`` (w = 1), ``sft_rejection`` (successes only), ``drift`` (w = exp(R/beta) / group
   mean), ``drift_rounds`` (iterative DRIFT: each round rolls out from the updated policy), ``grpo`` and
   ``grpo_turn`` (turn-level credit); the reference policy's step-0 test scores are a row of their own. Every
   run is a real ``python -m drift_verl.main`` job on the same 256 training problems (``data.seed=0``), N=8.
2. Equal tuning budget: each method gets the same number of grid points G (``--grid-points``, 4 here; the
   grids are data below, spanning learning rate, prompts per step and training length), each scored on all dev
   problems with one training seed (``DEV_SEED``, not a test seed, so that the test runs do not reuse the
   winning seed's luck). Offline methods train a given number of epochs; GRPO validates on dev every
   ``--grpo-dev-freq`` steps up to ``--grpo-max-steps`` and its step is chosen from that curve.
3. Chosen setting per method: the best dev solved-within-5 (GRPO: the best (point, step), the earliest step
   among equals). The chosen settings, and only they, run on the test problems with seeds 0..S-1 (``--seeds``,
   default 5; fewer only with ``--smoke``, whose outputs go to runs/compare-smoke, not docs/). GRPO trains to
   its chosen step, validating test at a quarter, half, three quarters of it and at the step (the frontier
   curve, fine enough for the cost to reach a level; the reference's own point is the step-0 validation of the
   DRIFT run of the same seed); its number is the chosen step's. The offline test
   runs train on a store of their own, made once by the same command from the same reference (a fresh draw of
   its rollouts): the dev store lived in a work folder that did not outlive its machine, and the test store is
   kept in ``<out>/test-store/`` so that every test run, on any machine, trains on the same one.
4. Differences on test solved-within-5 over seeds, with 95% t intervals: drift - sft_rejection, drift -
   sft_uniform, drift - best GRPO, drift_rounds - best GRPO (best GRPO: the better of grpo / grpo_turn on dev).
   Paired (per-seed differences, n - 1 degrees of freedom) where the seed fixes the same mini-batches (both
   single-round offline methods, same prompts per step and epochs, same store); otherwise Welch's interval.
   Verdict: "better" (interval above 0), "worse" (below 0), else "no difference measurable at this n".
5. Cost per run: rollout tokens and wall-clock of rollouts + updates (start-up and validation excluded), and the
   job's whole wall-clock. Runs on the shared store of the reference's rollouts are each charged its rollouts.
   A method's tuning cost is its whole dev grid (the shared store paid once per method; ``drift_rounds`` also
   pays its later rounds' rollouts; GRPO all its steps). ``grpo_rollout_share``: the share of a GRPO step's
   wall-clock spent generating (``timing_s/gen`` / ``timing_s/step``), mean over the chosen GRPO's test runs.
   A result marked ``"machine_shared"`` (by hand, naming what ran beside it on the cores) is scored like any
   other, but wall-clock means (test table, frontier, cost ratio, rollout share) take only the runs that had the
   machine alone (all, flagged, when none did); ``timing`` in summary.json names them.
6. Frontier (``frontier.png``): test solved-within-5 against rollout tokens and against wall-clock: GRPO's
   curves over steps, iterative DRIFT's rounds, the single-round methods as points, error bars over seeds, the
   reference as a line.
7. Weight health of the chosen DRIFT setting on the test store: ESS fraction, all-fail groups, groups with
   one success, and the spread of per-step (sum of weights / rows) under the old order (rows shuffled within
   16-prompt shards, 32-row steps) against whole-group steps of the chosen size.
8. Resumable: each finished run writes ``<out>/runs/<run>.json`` (its settings, command, metrics by step, wall;
   committed to git), so the protocol resumes run by run on any machine; stores and checkpoints live in
   ``--workdir``. Every run on the shared store records the store's folder and a hash of its files; results
   of different stores are refused. The test phase starts only when every dev run is done and runs only the
   chosen settings.
9. Outputs in ``--out``: ``summary.json`` (fixed schema, :func:`drift_verl.eval.protocol.summary`),
   ``comparison.json`` (everything), ``comparison.md`` (verdicts, tuning and test tables), ``frontier.png``,
   and ``non_repeat.json`` (:mod:`drift_verl.eval.non_repeat` on the test store's fixed turn-2 contexts: the
   reference, and each method's seed-0 test policy, measured as its run ends and kept in its result).
10. Regimes (``--regime``, :data:`REGIMES`): the same protocol on another task or reward, each job adding the
    regime's overrides, results and outputs in ``docs/comparison/regimes/<name>/`` (work in
    ``runs/compare/regimes/<name>``). A regime compares a subset of the methods, with its own dev grids or, as the
    informative-feedback regimes do, the settings the main protocol chose on dev (no tuning of its own, 3 seeds:
    a smaller scale); its summary also lands under ``"regimes"`` in the main summary.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from drift_verl.core import safe_io
from drift_verl.eval import protocol
from drift_verl.eval.protocol import BEST_GRPO, GRPO, Plan, ProtocolError
from drift_verl.eval.runs import run_job, tail

# ------------------------------------------------------------------------------------------------ the grids
# A 378K-parameter policy on 256 prompts x 8. The reference (asset v6) ends its SFT with a cosine decay to 0:
# fine-tuning it at 5e-4 in 32-row steps diverged (grad norm 1.5 -> 6, dev solved<=5 0.66 -> 0.55 in 8 steps),
# 1e-4 and 3e-4 did not (the main job: 96 steps at 3e-4). So the learning rates are 2e-4 and 5e-4 for every
# method. Offline: 16 prompts/step, 4 epochs did much better than 4 prompts/step, 1 epoch on the earlier
# reference; the grid is that point and the half fraction of {2e-4, 5e-4} x {16, 32} x {4, 8} around it: each
# level of each factor twice, 32 to 128 steps. DRIFT gets the same grid at the paper's beta, so that the three
# offline methods differ only in their weights.
OFFLINE_GRID = [
    {"lr": 2e-4, "prompts_per_step": 16, "epochs": 4},
    {"lr": 5e-4, "prompts_per_step": 16, "epochs": 8},
    {"lr": 2e-4, "prompts_per_step": 32, "epochs": 8},
    {"lr": 5e-4, "prompts_per_step": 32, "epochs": 4},
]
GRIDS = {
    "sft_uniform": OFFLINE_GRID,
    "sft_rejection": OFFLINE_GRID,
    "drift": [{**point, "beta": 0.1} for point in OFFLINE_GRID],
    # rounds 2 and 3; lr x prompts per step in full, epochs per round and rounds giving 6 or 8 epochs in all
    "drift_rounds": [
        {"lr": 2e-4, "prompts_per_step": 16, "epochs": 4, "rounds": 2, "beta": 0.1},
        {"lr": 5e-4, "prompts_per_step": 16, "epochs": 2, "rounds": 3, "beta": 0.1},
        {"lr": 2e-4, "prompts_per_step": 32, "epochs": 2, "rounds": 3, "beta": 0.1},
        {"lr": 5e-4, "prompts_per_step": 32, "epochs": 4, "rounds": 2, "beta": 0.1},
    ],
    # up to 64 steps (16 prompts/update was still improving at step 32 in 4 of 6 earlier runs), the step chosen
    # on dev; 4 prompts/update did not learn
    "grpo": [{"lr": lr, "prompts_per_step": p} for p in (16, 32) for lr in (2e-4, 5e-4)],
    "grpo_turn": [{"lr": lr, "prompts_per_step": p} for p in (16, 32) for lr in (2e-4, 5e-4)],
}
# task=tiny_long (the rollout-heavy regime): two points per method, the main protocol's choice and the same at the
# other learning rate (rejection SFT, iterative DRIFT and turn-level GRPO were chosen at 5e-4 on task=tiny).
# Provisional: GRPO collapsed the worked reference at 5e-4 in a probe, and its step is not yet rollout-heavy enough
# (docs/comparison/README.md, "Regimes"); the regime is not run until both are settled.
LONG_GRIDS = {
    "sft_rejection": [{"lr": lr, "prompts_per_step": 16, "epochs": 8} for lr in (5e-4, 2e-4)],
    "drift_rounds": [{"lr": lr, "prompts_per_step": 32, "epochs": 4, "rounds": 2, "beta": 0.1} for lr in (5e-4, 2e-4)],
    "grpo_turn": [{"lr": lr, "prompts_per_step": 32} for lr in (5e-4, 2e-4)],
}
# its sizes, cut to fit 4 hours on 2 cores (docs/comparison/README.md, "Regimes": the measured per-run times)
LONG_FLAGS = (("grid_points", 2), ("grpo_max_steps", 32), ("grpo_dev_freq", 8), ("test_samples", 8))
TRAIN_PROMPTS = 256  # of the task's training problems, the same for every run (data.seed fixes which)
DEV_SEED = 100  # the dev runs' training seed: none of the test seeds
VAL_BATCH = 256  # problems per validation batch: the whole dev or test split at once
MIN_SEEDS = 5
WEIGHTING = {"sft_uniform": "uniform", "sft_rejection": "rejection", "drift": "drift", "drift_rounds": "drift"}
WORKDIR = "{workdir}"  # in recorded commands: the --workdir of the machine that runs them
STORES = {"dev": "stores", "test": "test-stores"}  # each phase's stores folder in the workdir
HF_CHECKPOINT = "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]"
STORE_LINE = re.compile(r"\[drift\] trajectory store: (\S+)")


@dataclass(frozen=True)
class Regime:
    """One comparison: the main protocol, or the same protocol on another task or reward (its jobs add
    ``overrides``; its results, stores and outputs live in their own folders). ``grids`` None: no dev phase of its
    own, each method runs the setting the main protocol chose on dev (``BEST_GRPO`` in ``plan.methods``: the
    main protocol's better GRPO variant). ``reference``: the asset of the policy its stores roll out, whose fixed-
    context repeats are measured; ``retry_envs``: environments each seed-0 test policy and the reference also play
    with :mod:`drift_verl.tiny.quality` (does informative feedback change their retry success?)."""

    name: str
    about: str
    overrides: tuple[str, ...] = ()
    plan: Plan = protocol.MAIN
    grids: dict | None = None
    seeds: int = MIN_SEEDS
    reference: str = "tiny_reference"
    retry_envs: tuple[str, ...] = ()
    partial_credit: float = 0.0  # drift.partial_credit of its jobs and of its weight health
    flags: tuple[tuple[str, int], ...] = ()  # its own defaults of the size flags (:data:`FLAG_DEFAULTS`)

    @property
    def argv(self) -> tuple[str, ...]:
        """What every job of the regime adds to its command."""
        return (*self.overrides, *([f"drift.partial_credit={self.partial_credit}"] if self.partial_credit else []))


FLAG_DEFAULTS = {"grid_points": 4, "dev_samples": 8, "grpo_max_steps": 64, "grpo_dev_freq": 16, "test_samples": 16}
DRIFT_VS_REJECTION = {"drift_minus_sft_rejection": ("drift", "sft_rejection")}
INFORMATIVE_ENVS = ("try_again", "higher_lower")
REGIMES = {
    "main": Regime("main", "the embedded tiny task, every method tuned on dev", grids=GRIDS),
    "informative": Regime(
        "informative", "task=tiny_informative: `higher_lower` feedback and its reference, binary reward",
        ("task=tiny_informative",),
        Plan(("sft_rejection", "drift", BEST_GRPO),
             {**DRIFT_VS_REJECTION, "drift_minus_best_grpo": ("drift", BEST_GRPO)}),
        seeds=3, reference="tiny_reference_informative", retry_envs=INFORMATIVE_ENVS),
    "rollout_heavy": Regime(
        "rollout_heavy", "task=tiny_long: the reference shows its working (~43 tokens a turn), so rollouts take most "
        "of a GRPO step; DRIFT's one rollout pass per round against GRPO's rollouts at every step",
        ("task=tiny_long",),
        Plan(("sft_rejection", "drift_rounds", "grpo_turn"),
             {"drift_minus_best_grpo": ("drift_rounds", BEST_GRPO),
              "drift_minus_sft_rejection": ("drift_rounds", "sft_rejection")},
             reference_from="sft_rejection", drift="drift_rounds", grpo_poll_s=0.5),  # task_recipe/tiny_long_grpo
        grids=LONG_GRIDS, seeds=3, reference="tiny_reference_worked", flags=LONG_FLAGS),
    "informative_graded": Regime(
        "informative_graded", "task=tiny_informative with partial credit by distance (reward_fns.distance, "
        "drift.partial_credit 0.5): where exp(R/beta) can differ from rejection's filter",
        ("task=tiny_informative", "reward.custom_reward_function.path=pkg://reward_fns.distance"),
        Plan(("sft_rejection", "drift"), DRIFT_VS_REJECTION), seeds=3, reference="tiny_reference_informative",
        partial_credit=0.5),
}
RETRY_SAMPLES = 8  # samples per test problem when a seed-0 policy plays each of retry_envs


@dataclass
class Run:
    """One planned job: its name (the result file's), what it is, and its command with ``{workdir}`` unfilled."""

    name: str
    phase: str
    method: str
    seed: int | None
    settings: dict
    split: str | None
    val_samples: int | None
    argv: list[str]


def grid(grids: dict, method: str, points: int) -> list[dict]:
    if points > len(grids[method]):
        raise ProtocolError(f"--grid-points {points}: {method}'s grid has {len(grids[method])} points; extend GRIDS")
    return grids[method][:points]


def slug(settings: dict) -> str:
    short = {"lr": "lr", "prompts_per_step": "p", "epochs": "e", "rounds": "r", "beta": "b", "steps": "s"}
    return "-".join(f"{short[key]}{value:g}" for key, value in settings.items())


# ------------------------------------------------------------------------------------------------ commands
def common(name: str, split: str | None, samples: int | None, overrides: tuple[str, ...] = ()) -> list[str]:
    argv = ["platform=cpu", "trainer.logger=[console,file]", f"trainer.default_local_dir={WORKDIR}/{name}/checkpoints",
            f"data.train_max_samples={TRAIN_PROMPTS}"]
    if split:
        # all problems in one validation batch: the vLLM server gets every request at once, not 16 at a time
        argv += [f"data.val_files=${{drift_asset:tiny_{split}}}", "data.val_max_samples=-1",
                 f"data.val_batch_size={VAL_BATCH}", f"actor_rollout_ref.rollout.val_kwargs.n={samples}"]
    return argv + list(overrides)


def store_run(phase: str = "dev", overrides: tuple[str, ...] = ()) -> Run:
    """The reference's rollouts on the training prompts, once per phase: every offline run of the phase trains
    on them."""
    name = "store" if phase == "dev" else f"{phase}-store"
    argv = ["-m", "drift_verl.main", "recipe=drift", "drift.phases=[rollouts]",
            f"drift.store_dir={WORKDIR}/{STORES[phase]}", *common(name, None, None, overrides)]
    return Run(name, phase, "store", None, {}, None, None, argv)


def offline_argv(method: str, settings: dict, seed: int, store: str, validate_reference: bool,
                 phase: str = "dev") -> list[str]:
    """A DRIFT-family job: single-round methods train on the phase's store as given (never rolled out again);
    iterative DRIFT finds it as its round 0 and rolls out its later rounds."""
    argv = ["recipe=drift", f"drift.weighting={WEIGHTING[method]}", f"drift.seed={seed}",
            f"drift.epochs={settings['epochs']}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={settings['prompts_per_step']}",
            f"actor_rollout_ref.actor.optim.lr={settings['lr']}", f"trainer.val_before_train={validate_reference}"]
    if "beta" in settings:
        argv.append(f"drift.beta={settings['beta']}")
    if method == "drift_rounds":
        return argv + [f"drift.rounds={settings['rounds']}", f"drift.store_dir={WORKDIR}/{STORES[phase]}"]
    return argv + ["drift.phases=[weights,update]", f"drift.store={WORKDIR}/{STORES[phase]}/{store}"]


def grpo_argv(method: str, settings: dict, seed: int, steps: int, test_freq: int, validate_reference: bool,
              save: bool) -> list[str]:
    prompts = settings["prompts_per_step"]
    return ["recipe=grpo", f"algorithm.adv_estimator={method}", f"data.train_batch_size={prompts}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
            f"actor_rollout_ref.actor.optim.lr={settings['lr']}",
            f"trainer.total_training_steps={steps}", f"trainer.test_freq={test_freq}", "trainer.total_epochs=1000",
            f"actor_rollout_ref.actor.data_loader_seed={seed}", f"trainer.val_before_train={validate_reference}",
            f"trainer.save_freq={steps if save else -1}"]


def dev_runs(args, store: str) -> list[Run]:
    """The store, then every method's G grid points on dev, one seed (the first DRIFT point also validates the
    reference on dev, for the tuning tables)."""
    overrides = args.regime.argv
    runs = [store_run("dev", overrides)]
    for method in args.plan.methods:
        for index, settings in enumerate(grid(args.regime.grids, method, args.grid_points)):
            name = f"dev-{method}-{slug(settings)}"
            if method in GRPO:
                argv = grpo_argv(method, settings, DEV_SEED, args.grpo_max_steps, args.grpo_dev_freq, False, False)
            else:
                validates = method == args.plan.reference_from and index == 0
                argv = offline_argv(method, settings, DEV_SEED, store, validates)
            runs.append(Run(name, "dev", method, DEV_SEED, settings, "dev", args.dev_samples,
                            ["-m", "drift_verl.main", *argv, *common(name, "dev", args.dev_samples, overrides)]))
    return runs


def test_runs(args, store: str, chosen: dict[str, dict]) -> list[Run]:
    """The chosen setting of every method on test, seeds 0..S-1, the offline ones on the test store; seed 0 keeps
    Hugging Face weights for the non-repeat study. DRIFT's runs validate step 0 (the reference row)."""
    runs = []
    for method in args.plan.methods:
        settings = chosen[method]
        for seed in range(args.seeds):
            name = f"test-{method}-{slug(settings)}-seed{seed}"
            if method in GRPO:
                steps = settings["steps"]
                argv = grpo_argv(method, settings, seed, steps, max(1, steps // 4), False, seed == 0)
            else:
                argv = offline_argv(method, settings, seed, store, method == args.plan.reference_from, "test")
            runs.append(Run(name, "test", method, seed, settings, "test", args.test_samples,
                            ["-m", "drift_verl.main", *argv, *common(name, "test", args.test_samples, args.regime.argv),
                             HF_CHECKPOINT]))
    return runs


# ------------------------------------------------------------------------------------------------ results
def result_file(args, name: str) -> Path:
    return args.runs / f"{name}.json"


def load(args, run: Run) -> dict | None:
    """A finished run's result; refused when it was made with another command than the one planned now."""
    path = result_file(args, run.name)
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if result["argv"] != run.argv:
        changed = sorted(set(result["argv"]) ^ set(run.argv))
        raise ProtocolError(f"{path}: made with another command than planned now (differs in {changed}); delete it "
                            "to run it again with the current settings")
    return result


def store_identity(folder: Path) -> dict:
    """The store's folder name (its configuration's fingerprint) and a hash of its files (its rollouts)."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"folder": folder.name, "sha256": digest.hexdigest()}


def kept_store(args, store: dict) -> Path:
    """Where the test store is kept with the results (a few hundred KB): the test phase resumes on any machine."""
    return args.out / "test-store" / store["store"]["folder"]


def verified_store(args, store: dict) -> Path:
    """The phase's shared store in the workdir (the test store copied there from where it is kept, if missing),
    refused unless its files are the ones the results record."""
    folder = args.workdir / STORES[store["phase"]] / store["store"]["folder"]
    if not folder.is_dir() and store["phase"] == "test" and kept_store(args, store).is_dir():
        shutil.copytree(kept_store(args, store), folder)
    if not folder.is_dir() or store_identity(folder) != store["store"]:
        if store["phase"] == "test":
            what_to_do = (f"remove {folder} (it is copied again from {kept_store(args, store)}), or delete "
                          f"{result_file(args, store['name'])} and every test- result of the offline methods to "
                          "make a new test store")
        else:
            what_to_do = (f"copy that store here from the machine that made it, or delete {result_file(args, 'store')} "
                          f"and every dev- result of {', '.join(protocol.SHARED_STORE)} to tune the offline methods "
                          "afresh")
        raise ProtocolError(
            f"{folder}: {'missing' if not folder.is_dir() else 'not the store the recorded results trained on'} "
            f"(sha256 {store['store']['sha256'][:12]}): {what_to_do}")
    return folder


def forget_attempt(args, run: Run) -> None:
    """An unfinished run starts afresh: its folder, and stores of later rounds rolled out from its checkpoints (they
    would be reused, uncharged, by the new attempt)."""
    run_dir = args.workdir / run.name
    for manifest in (m for stores in STORES.values() for m in (args.workdir / stores).glob("*/manifest.json")):
        reference = json.loads(manifest.read_text())["spec"].get("reference")
        if isinstance(reference, dict) and reference.get("run") == str((run_dir / "checkpoints").resolve()):
            shutil.rmtree(manifest.parent)
    shutil.rmtree(run_dir, ignore_errors=True)


def execute(args, run: Run, store: dict | None) -> dict:
    """Run one job (unless its result exists) and record its result atomically."""
    found = load(args, run)
    if found is not None:
        return with_seed0_measures(args, run, found, store)
    if run.method in protocol.SHARED_STORE:
        verified_store(args, store)
    forget_attempt(args, run)
    argv = [a.replace(WORKDIR, str(args.workdir)) for a in run.argv]
    print(f"[compare] {run.name}: python {' '.join(argv)}", flush=True)
    proc, metrics, wall = run_job(argv, args.workdir / run.name, timeout=args.job_timeout)
    if proc.returncode != 0:
        sys.exit(f"[compare] {run.name} failed (exit {proc.returncode}); see {args.workdir / run.name / 'job.log'}\n"
                 f"{tail(proc, 30)}")
    result = {"name": run.name, "phase": run.phase, "method": run.method, "seed": run.seed, "settings": run.settings,
              "split": run.split, "val_samples": run.val_samples, "argv": run.argv, "job_wall_s": wall,
              "metrics": protocol.compact(metrics)}
    if run.method == "store" or run.method in protocol.SHARED_STORE:
        result["store"] = store_identity(trained_store(args, run, proc.stdout + proc.stderr, metrics))
    if run.method == "store" and run.phase == "test":
        shutil.rmtree(kept_store(args, result), ignore_errors=True)
        shutil.copytree(verified_store(args, result), kept_store(args, result))
    safe_io.write_text(result_file(args, run.name), json.dumps(result, indent=1))
    return with_seed0_measures(args, run, result, store)


def with_seed0_measures(args, run: Run, result: dict, store: dict | None) -> dict:
    """A seed-0 test result with its policy's measurements, taken once from the run's last checkpoint and recorded
    (a finished run is never trained again for them): the fixed-context repeats (:func:`non_repeat_of`; not with
    --skip-non-repeat) and, in a regime with ``retry_envs``, the retry success in each (:func:`retry_of`)."""
    if run.phase != "test" or run.seed != 0:
        return result
    measures = {} if args.skip_non_repeat else {"non_repeat": lambda w: non_repeat_of(w, verified_store(args, store))}
    if args.regime.retry_envs:
        measures["retry"] = lambda w: retry_of(w, args.regime.retry_envs)
    missing = [key for key in measures if key not in result]
    if not missing:
        return result
    weights = hf_weights(args.workdir / run.name)
    if weights is None:
        what = " or ".join(key.replace("_", "-") for key in missing)
        raise ProtocolError(f"{result_file(args, run.name)}: no {what} measurement, and the run's last "
                            f"checkpoint is not in {args.workdir / run.name}: delete the result to run it again"
                            + (", or run with --skip-non-repeat" if missing == ["non_repeat"] else ""))
    result = {**result, **{key: measures[key](weights) for key in missing}}
    safe_io.write_text(result_file(args, run.name), json.dumps(result, indent=1))
    return result


def trained_store(args, run: Run, log: str, metrics: dict) -> Path:
    """The store a DRIFT-family job made or trained its first round on (the first one its log names); iterative
    DRIFT must have found the shared one rather than rolled out its first round again."""
    found = STORE_LINE.search(log)
    if found is None:
        raise ProtocolError(f"{run.name}: its log names no trajectory store; see {args.workdir / run.name / 'job.log'}")
    folder = Path(found.group(1))
    if run.method == "drift_rounds" and metrics.get(0, {}).get("drift/rollout/new_trajectories", 0):
        raise ProtocolError(f"{run.name}: round 0 rolled out anew (store {folder.name}) instead of reusing the shared "
                            "store: its rollout settings differ from the store job's; fix the command")
    return folder


def by_method(results: list[dict], methods: tuple[str, ...]) -> dict[str, list[dict]]:
    """Results grouped by method, in plan order (dev: grid order; test: seed order)."""
    return {method: [r for r in results if r["method"] == method] for method in methods}


def dev_results(args, store: dict) -> dict[str, list[dict]] | None:
    """Every method's dev results in grid order; None while any is missing."""
    results = [load(args, run) for run in dev_runs(args, store["store"]["folder"])[1:]]
    return None if any(r is None for r in results) else by_method(results, args.plan.methods)


def chosen_settings(dev: dict[str, list[dict]], store: dict, plan: Plan) -> dict[str, dict]:
    return protocol.choice(protocol.tuning(dev, store, plan))[0]


def main_protocol(args) -> argparse.Namespace:
    """The main protocol's arguments (this command's grid and GRPO flags and --smoke, its results in
    ``--main-out``): a regime without grids runs the settings the main protocol chose on dev."""
    main = argparse.Namespace(**{**vars(args), **args.given_flags, "regime": "main", "out": args.main_out,
                                 "runs": None, "workdir": None, "seeds": None})
    return finish(main)


def main_choice(args) -> tuple[dict, str]:
    """The main protocol's chosen settings and its better GRPO variant on dev (it must have finished its dev
    phase)."""
    store, dev = require_dev(main_protocol(args))
    return protocol.choice(protocol.tuning(dev, store))


def resolve_plan(args) -> Plan:
    """The regime's plan with ``BEST_GRPO`` among its methods replaced by the main protocol's better GRPO."""
    plan = args.regime.plan
    if BEST_GRPO not in plan.methods:
        return plan
    _, grpo = main_choice(args)
    return replace(plan, methods=tuple(grpo if m == BEST_GRPO else m for m in plan.methods))


# ------------------------------------------------------------------------------------------------ phases
def phase_dev(args) -> dict | None:
    """The store (made first, from scratch unless its result exists), then every dev grid point (a regime
    without grids has no dev phase)."""
    if args.regime.grids is None:
        print(f"[compare] regime {args.regime.name}: no dev phase (it runs the main protocol's chosen settings)")
        return None
    run = store_run("dev", args.regime.argv)
    store = load(args, run)
    if store is None:
        stale = sorted(p.name for p in args.runs.glob("*.json") if json.loads(p.read_text()).get("method")
                       in protocol.SHARED_STORE and p.name.startswith("dev-")) if args.runs.is_dir() else []
        if stale:
            raise ProtocolError(f"the store's result {result_file(args, 'store')} is missing but results trained on a "
                                f"store exist ({', '.join(stale)}): restore store.json or delete them")
        shutil.rmtree(args.workdir / "stores", ignore_errors=True)
        store = execute(args, run, None)
    existing = [r for r in (load(args, x) for x in dev_runs(args, store["store"]["folder"])[1:]) if r]
    protocol.check_store(store, existing)
    for planned in dev_runs(args, store["store"]["folder"])[1:]:
        execute(args, planned, store)
    return store


def require_dev(args) -> tuple[dict, dict[str, list[dict]]]:
    store = load(args, store_run("dev", args.regime.argv))
    dev = dev_results(args, store) if store else None
    if dev is None:
        raise ProtocolError(f"the dev phase{'' if args.regime.name == 'main' else ' of regime ' + args.regime.name} "
                            "is not finished: run --phase dev first (the test phase reads only the settings chosen "
                            "on dev)")
    protocol.check_store(store, [r for runs in dev.values() for r in runs])
    return store, dev


def chosen_for(args) -> tuple[dict | None, dict | None, dict[str, dict]]:
    """(the dev store's result, the dev results, each method's setting for test): the regime's own dev phase, or
    (no grids) the main protocol's choices."""
    if args.regime.grids is None:
        chosen, _ = main_choice(args)
        return None, None, {m: chosen[m] for m in args.plan.methods}
    store, dev = require_dev(args)
    return store, dev, chosen_settings(dev, store, args.plan)


def phase_test(args) -> None:
    """The test store (made first, unless its result exists), then the chosen setting of every method."""
    _, _, chosen = chosen_for(args)
    test_store_run = store_run("test", args.regime.argv)
    if load(args, test_store_run) is None:  # made from scratch: a killed attempt's shards would be reused uncharged
        shutil.rmtree(args.workdir / STORES["test"], ignore_errors=True)
    test_store = execute(args, test_store_run, None)
    existing = [r for r in (load(args, x) for x in test_runs(args, test_store["store"]["folder"], chosen)) if r]
    protocol.check_store(test_store, existing)
    cached_weight_health(args, test_store, chosen[args.plan.drift])
    for run in test_runs(args, test_store["store"]["folder"], chosen):
        execute(args, run, test_store)


def cached_weight_health(args, store: dict, drift: dict) -> dict:
    """The chosen DRIFT setting's weight health, computed from the store once and kept beside the results."""
    path = result_file(args, "weight_health")
    key = {"store": store["store"], "settings": drift}
    if args.regime.partial_credit:
        key["partial_credit"] = args.regime.partial_credit
    if path.exists() and {k: v for k, v in json.loads(path.read_text()).items() if k in key} == key:
        return json.loads(path.read_text())
    health = {**key, **weight_health(verified_store(args, store), drift, partial_credit=args.regime.partial_credit)}
    safe_io.write_text(path, json.dumps(health, indent=1))
    return health


def weight_health(folder: Path, drift: dict, seed: int = 0, partial_credit: float = 0.0) -> dict:
    """The store's returns and DRIFT weights (the project's functions, as ``python -m drift_verl.store inspect``
    computes them), and one training seed's steps under the old order and under whole-group steps."""
    import numpy as np

    from drift_verl.core.weights import weigh
    from drift_verl.core.schedule import Schedule, epoch_seed
    from drift_verl.core.store import TrajectoryStore, returns_and_groups
    from drift_verl.core.config import DriftConfig, WeightConfig

    store = TrajectoryStore.open(folder)
    # the recipe's gamma, repetition coefficient and group normalisation
    config = WeightConfig(beta=drift["beta"], partial_credit=partial_credit)
    returns, groups, solved = returns_and_groups(store, config.gamma, config.repetition_coef, partial_credit)
    weights, diagnostics = weigh(returns, groups, solved, config)
    sizes = store.shard_sizes()
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    schedule = Schedule.of(prompts=store.num_prompts, prompts_per_step=drift["prompts_per_step"],
                           samples_per_prompt=protocol.SAMPLES_PER_PROMPT, window=DriftConfig.shuffle_window,
                           epochs=drift["epochs"], rounds=1, seed=seed)
    group_steps = [[int(offsets[s] + r) for s, r in step[1]] for step in schedule.remaining_steps(sizes, 0, 0)]
    old_steps = protocol.old_order_steps(sizes, [epoch_seed(seed, 0, e) for e in range(drift["epochs"])])
    return protocol.weight_health(weights, groups, solved, diagnostics, old_steps, group_steps)


def phase_report(args, command: str) -> None:
    store, dev, chosen = chosen_for(args)
    test_store = load(args, store_run("test", args.regime.argv))
    runs = test_runs(args, test_store["store"]["folder"], chosen) if test_store else []
    results = [load(args, run) for run in runs]
    missing = [run.name for run, result in zip(runs, results) if result is None]
    if test_store is None or missing:
        raise ProtocolError(f"the test phase is not finished ({len(missing) if runs else 'its store and all'} of "
                            f"{len(runs) or len(args.plan.methods) * args.seeds} runs missing): run --phase test "
                            "first")
    health = cached_weight_health(args, test_store, chosen[args.plan.drift])
    test = by_method(results, args.plan.methods)
    full = protocol.report(dev, test, store, split_sizes(), health, test_store, args.plan,
                           None if dev else chosen)
    full.update(command=command, regime={"name": args.regime.name, "about": args.regime.about,
                                         "overrides": list(args.regime.argv), "chosen_in": str(args.main_out)},
                non_repeat=non_repeat_study(args, test_store, test), retry=retry_study(args, test))
    summary = {**protocol.summary(full), **({"retry": full["retry"]} if full["retry"] else {})}
    if args.regime.name == "main":
        summary["regimes"] = regime_summaries(args.out)
    else:
        summary["regime"] = full["regime"]
    args.out.mkdir(parents=True, exist_ok=True)
    safe_io.write_text(args.out / "summary.json", json.dumps(summary, indent=1))
    safe_io.write_text(args.out / "comparison.json", json.dumps(full, indent=1))
    safe_io.write_text(args.out / "comparison.md", markdown(full))
    plot_frontier(full, args.out / "frontier.png")
    if args.regime.name != "main":
        add_to_main_summary(args.main_out, args.regime.name, summary)
    print(markdown(full))


def regime_summaries(out: Path) -> dict:
    """``"regimes"`` of the main summary.json: each reported regime's summary (``<out>/regimes/<name>/``)."""
    found = sorted((out / "regimes").glob("*/summary.json")) if (out / "regimes").is_dir() else []
    return {path.parent.name: json.loads(path.read_text()) for path in found}


def add_to_main_summary(main_out: Path, name: str, summary: dict) -> None:
    """A regime's report also lands under ``"regimes"`` of the main summary.json, once that one exists."""
    path = main_out / "summary.json"
    if path.exists():
        main = json.loads(path.read_text())
        main.setdefault("regimes", {})[name] = summary
        safe_io.write_text(path, json.dumps(main, indent=1))


def split_sizes() -> dict:
    from drift_verl.tiny.task import splits

    sizes = {name: len(problems) for name, problems in splits().items()}
    return {"train_problems": TRAIN_PROMPTS, "dev_problems": sizes["dev"], "test_problems": sizes["test"]}


# ------------------------------------------------------------------------------------------------ non-repeat study
def hf_weights(run_dir: Path) -> Path | None:
    """The Hugging Face folder of a run's last checkpoint, if it is there."""
    steps = sorted((run_dir / "checkpoints").glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    folder = steps[-1] / "actor" / "huggingface" if steps else None
    return folder if folder and folder.is_dir() else None


def non_repeat_of(model: Path, store_folder: Path) -> dict:
    """One policy's second answers on the store's fixed turn-2 contexts (:mod:`drift_verl.eval.non_repeat`)."""
    from drift_verl.core.store import TrajectoryStore
    from drift_verl.eval.non_repeat import CONTEXTS, SAMPLES, fixed_contexts, measure, second_answers

    contexts = fixed_contexts(TrajectoryStore.open(store_folder), CONTEXTS)
    answers = second_answers(str(model), contexts, SAMPLES)
    return {"contexts": len(contexts), "samples_per_context": SAMPLES, **measure(contexts, answers, SAMPLES)}


def non_repeat_study(args, test_store: dict, test: dict[str, list[dict]]) -> dict | None:
    """The reference (measured now: its build is cached, or made again byte for byte) and each method's seed-0
    test policy (measured as its run ended) on the test store's fixed turn-2 contexts; None with
    --skip-non-repeat."""
    if args.skip_non_repeat:
        return None
    seed0 = seed0_results(args, test)
    missing = [r["name"] for r in seed0.values() if "non_repeat" not in r]
    if missing:
        raise ProtocolError(f"no non-repeat measurement in {', '.join(missing)}: delete them to run them again, or "
                            "report with --skip-non-repeat")
    reference = non_repeat_of(reference_model(args), verified_store(args, test_store))
    study = {"store": test_store["store"], "contexts": reference["contexts"],
             "samples_per_context": reference["samples_per_context"],
             "models": {"reference": reference, **{m: r["non_repeat"] for m, r in seed0.items()}}}
    safe_io.write_text(args.out / "non_repeat.json", json.dumps(study, indent=1))
    return study


def seed0_results(args, test: dict[str, list[dict]]) -> dict[str, dict]:
    """Each method's seed-0 test result: the one whose policy's measurements the report shows."""
    return {m: next(r for r in test[m] if r["seed"] == 0) for m in args.plan.methods}


def reference_model(args) -> Path:
    """The regime's reference policy (its asset is cached, or built again byte for byte)."""
    from drift_verl.tiny import assets

    return Path(getattr(assets, args.regime.reference)())


def retry_of(model: Path, envs: tuple[str, ...]) -> dict[str, list[float]]:
    """A policy's solved-within-1..5 on every test problem x RETRY_SAMPLES in each environment (Hugging Face
    sampling at temperature 1, :func:`drift_verl.tiny.quality.solved_within`)."""
    from drift_verl.tiny.quality import solved_within
    from drift_verl.tiny.task import splits

    return {env: solved_within(str(model), splits()["test"], RETRY_SAMPLES, env=env) for env in envs}


def retry_study(args, test: dict[str, list[dict]]) -> dict | None:
    """Does informative feedback change retry success? The reference (measured now) and each method's seed-0 test
    policy (measured as its run ended), in each of the regime's ``retry_envs``; None without them."""
    if not args.regime.retry_envs:
        return None
    seed0 = seed0_results(args, test)
    missing = [r["name"] for r in seed0.values() if "retry" not in r]
    if missing:
        raise ProtocolError(f"no retry measurement in {', '.join(missing)}: delete them to run them again")
    return {"samples_per_problem": RETRY_SAMPLES, "envs": list(args.regime.retry_envs),
            "models": {"reference": retry_of(reference_model(args), args.regime.retry_envs),
                       **{m: r["retry"] for m, r in seed0.items()}}}


# ------------------------------------------------------------------------------------------------ outputs
def _fmt(values: list[float], digits: int = 3) -> str:
    stats = protocol.mean_std(values)
    return f"{stats['mean']:.{digits}f}" + (f" ± {stats['std']:.{digits}f}" if stats["std"] else "")


def _settings(settings: dict) -> str:
    return ", ".join(f"{key} {value:g}" for key, value in settings.items())


def markdown(full: dict) -> str:
    split, rows = full["split"], full["rows"]
    regime = full.get("regime") or {"name": "main"}
    where = ("Settings chosen on "
             f"{split['dev_problems']} dev problems" if full["tuning"] is not None else
             f"Settings: those the main protocol chose on dev ({regime.get('chosen_in')})")
    lines = [f"Command: `{full['command']}`", ""]
    if regime["name"] != "main":
        lines += [f"Regime **{regime['name']}**: {regime['about']}. Every job adds `{' '.join(regime['overrides'])}`.",
                  ""]
    lines += [f"Test: {split['test_problems']} problems x {full['samples_per_prompt']} samples at temperature 1, T=5; "
              f"seeds {', '.join(map(str, full['seeds']))} (mean ± sample std). {where}; {split['train_problems']} "
              "training problems x 8. Cost: rollouts + updates (start-up and validation excluded); tokens are response "
              "tokens generated for training.", "",
              "## Verdicts (test solved≤5, 95% CI)", "", "| difference | mean | 95% CI | interval | n | verdict |",
              "|---|---|---|---|---|---|"]
    for name, d in full["differences"].items():
        ci = f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d["ci95"] else "–"
        lines.append(f"| {d['methods'][0]} − {d['methods'][1]} | {d['mean']:+.3f} | {ci} | "
                     f"{'paired' if d['paired'] else 'Welch'} | {d['n']} | {d['verdict']} |")
    if full["best_grpo"]:
        lines += ["", f"GRPO variant: {full['best_grpo']} (the better one on "
                  f"{'dev' if full['tuning'] is not None else 'the main protocol’s dev'})."]
    lines += ["", "## Test", "",
              "| method | chosen setting | solved≤1 | solved≤5 | non-repeat | step 0 solved≤5 | wall-clock (s) | "
              "rollout tokens | job wall (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, values in rows.items():
        cells = [_fmt([r[k] for r in values]) for k in ("solved_within_1", "solved_within_5", "non_repeat",
                                                         "step0_solved_within_5")]
        cells += [_fmt([r[k] for r in (protocol.timed(values) if k in protocol.WALL_METRICS else values)], 0)
                  for k in ("wall_s", "rollout_tokens", "job_wall_s")]
        lines.append(f"| {name} | {_settings(full['chosen'].get(name, {})) or '–'} | " + " | ".join(cells) + " |")
    lines += ["", timing_line(full["timing"])]
    ratio = full["drift_vs_grpo"]
    if ratio:
        lines += ["", f"DRIFT vs {ratio['grpo_variant']} (target: its mean test solved≤5, "
                  f"{ratio['target_solved_within_5']:.3f}): " + (
                      f"wall-clock ratio {ratio['wall_ratio']:.2f} (at most {ratio['wall_ratio_at_most']:.2f} had "
                      f"GRPO never waited on its rollout buffer's {full['grpo_poll_s']:g} s poll), token ratio "
                      f"{ratio['token_ratio']:.2f}."
                      if ratio["wall_ratio"] is not None else "DRIFT's mean does not reach it (no cost ratio)."),
                  f"Share of a GRPO step spent generating ({full['best_grpo']}, test runs): "
                  f"{full['grpo_rollout_share']:.2f}."]
    if full["tuning"] is not None:
        lines += ["", "## Tuning on dev", ""]
        if full["reference_dev_solved_within_5"] is not None:
            lines += [f"Reference policy on dev: solved≤5 {full['reference_dev_solved_within_5']:.3f}.", ""]
        for method, entries in full["tuning"].items():
            cost = full["tuning_cost"][method]
            lines += [f"**{method}** (tuning cost: {cost['wall_s']:.0f} s, {cost['rollout_tokens']:.0f} rollout "
                      "tokens)", "", "| setting | dev solved≤5 | chosen |", "|---|---|---|"]
            for entry in entries:
                mark = "✓" if entry["settings"] == full["chosen"][method] else ""
                lines.append(f"| {_settings(entry['settings'])} | {entry['dev_solved_within_5']:.3f} | {mark} |")
            lines.append("")
    else:
        lines.append("")
    lines += weight_health_lines(full["weight_health"]) + non_repeat_lines(full["non_repeat"])
    return "\n".join(lines + retry_lines(full.get("retry"))) + "\n"


def retry_lines(study: dict | None) -> list[str]:
    """Retry success per environment: does informative feedback change it?"""
    if not study:
        return []
    envs = study["envs"]
    lines = ["", f"## Retry success by environment (seed 0's test policies; Hugging Face sampling, test problems x "
             f"{study['samples_per_problem']})", "",
             "| policy | " + " | ".join(f"{env}: solved≤1 | solved≤5" for env in envs) +
             f" | {envs[-1]} − {envs[0]} (solved≤5) |", "|---|" + "---|---|" * len(envs) + "---|"]
    for name, by_env in study["models"].items():
        cells = [f"{by_env[env][0]:.3f} | {by_env[env][-1]:.3f}" for env in envs]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {by_env[envs[-1]][-1] - by_env[envs[0]][-1]:+.3f} |")
    return lines


def timing_line(timing: dict) -> str:
    """Which runs the wall-clock columns average: a run that shared the 2 cores with other work is scored but not
    timed."""
    shared = {m: t for m, t in timing["test"].items() if t["every_run_shared_the_machine"]}
    line = ("Wall-clock columns and the frontier's wall-clock: mean over the seeds that had the machine alone, "
            "or over all seeds where none did (" +
            "; ".join(f"{m}: {', '.join(map(str, t['wall_clock_seeds']))}" for m, t in timing["test"].items()) + ").")
    if shared:
        line += f" Every run of {', '.join(shared)} shared the machine: its wall-clock is inflated."
    if timing["dev_machine_shared"]:
        line += (f" Tuning cost counts {len(timing['dev_machine_shared'])} dev runs that shared the machine as "
                 "measured (an upper bound).")
    return line


def weight_health_lines(health: dict) -> list[str]:
    sums = health["step_weight_sum_per_row"]
    lines = [f"## Weight health (DRIFT, {_settings(health['settings'])}, store {health['store']['folder']})", "",
             f"ESS fraction {health['ess_fraction']:.3f}; all-fail groups {health['all_fail_group_share']:.1%}; groups "
             f"with one success {health['lone_success_share']:.1%}; largest weight {health['max_weight']:.2f}.", "",
             "| steps | rows per step | min | p5 | median | p95 | max (sum of weights / rows) |",
             "|---|---|---|---|---|---|---|"]
    for name, s in sums.items():
        lines.append(f"| {name.replace('_', ' ')} | {s['rows_per_step']} | {s['min']:.2f} | {s['p5']:.2f} | "
                     f"{s['median']:.2f} | {s['p95']:.2f} | {s['max']:.2f} |")
    return lines + [""]


def non_repeat_lines(study: dict | None) -> list[str]:
    if study is None:
        return ["Non-repeat on fixed contexts: not run (--skip-non-repeat)."]
    lines = ["## Non-repeat on fixed contexts (seed 0's test policies)", "",
             f"{study['contexts']} reference trajectories whose parseable first answer was wrong, cut before turn 2; "
             f"{study['samples_per_context']} sampled second answers each.", "",
             "| policy | repeats the rejected answer | second answer right | parseable |", "|---|---|---|---|"]
    for name, m in study["models"].items():
        lines.append(f"| {name} | {1 - m['non_repeat']:.3f} | {m['correct']:.3f} | {m['parseable']:.3f} |")
    return lines


def plot_frontier(full: dict, out: Path) -> None:
    """Test solved-within-5 against rollout tokens and against wall-clock, error bars over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for panel, cost, label in zip(panels, ("rollout_tokens", "wall_s"),
                                  ("rollout tokens", "wall-clock of rollouts + updates (s)")):
        for method in full["methods"]:
            curve = full["frontier"][method]
            panel.errorbar([p[cost] for p in curve], [p["solved_within_5"] for p in curve],
                           yerr=[p["solved_within_5_std"] for p in curve], marker="o" if len(curve) > 1 else "*",
                           markersize=6 if len(curve) > 1 else 12, capsize=3, label=method)
        panel.axhline(full["frontier"]["reference"][0]["solved_within_5"], color="gray", linestyle="--",
                      label="reference")
        panel.set(xlabel=label, title=f"Test solved≤5 vs {label.split(' of')[0]}")
    panels[0].set_ylabel(f"solved within 5 (mean over {len(full['seeds'])} seeds)")
    regime = (full.get("regime") or {}).get("name", "main")
    if regime != "main":
        fig.suptitle(f"regime {regime}")
    panels[1].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with safe_io.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ dry run and CLI
def dry_run(args) -> None:
    """The planned runs, done or to do, and their count, without running anything."""
    methods = args.plan.methods
    print(f"regime {args.regime.name}: {args.regime.about}" + (f" (adds {' '.join(args.regime.argv)})"
                                                               if args.regime.argv else ""))
    dev, chosen = [], None
    if args.regime.grids is not None:
        store = load(args, store_run("dev", args.regime.argv))
        folder = store["store"]["folder"] if store else "<store>"
        dev = dev_runs(args, folder)
        results = [load(args, run) for run in dev]
        print(f"dev phase: {len(dev)} jobs ({sum(r is not None for r in results)} done), validation on all dev "
              f"problems x {args.dev_samples} samples, training seed {DEV_SEED}")
        for run, result in zip(dev, results):
            _plan_line(result is not None, run.method, _settings(run.settings) or "the reference's rollouts", run.name)
        chosen = chosen_settings(by_method(results[1:], methods), store, args.plan) if all(results) else None
    else:
        chosen = chosen_for(args)[2]
        print("no dev phase: the main protocol's chosen settings")
    print(f"test phase: {1 + len(methods) * args.seeds} jobs, validation on all test problems x {args.test_samples} "
          f"samples, seeds {' '.join(map(str, range(args.seeds)))}")
    test_store = load(args, store_run("test", args.regime.argv))
    _plan_line(test_store is not None, "store", "the reference's rollouts for the test runs", "test-store")
    if chosen:
        for run in test_runs(args, test_store["store"]["folder"] if test_store else "<test store>", chosen):
            _plan_line(load(args, run) is not None, run.method, f"seed {run.seed}  {_settings(run.settings)}", run.name)
    else:
        for method in methods:
            for seed in range(args.seeds):
                _plan_line(False, method, f"seed {seed}  the setting chosen on dev", "")
    tests = 1 + len(methods) * args.seeds
    print(f"estimated: {len(dev) + tests} jobs ({len(dev)} dev + {tests} test)")


def _plan_line(done: bool, method: str, what: str, name: str) -> None:
    print(f"  [{'done' if done else 'todo'}] {method:<13} {what}" + (f"  ({name})" if name else ""))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("dev", "test", "report", "all"), default="all")
    parser.add_argument("--regime", choices=sorted(REGIMES), default="main",
                        help="main, or the protocol on another task or reward (" +
                        "; ".join(f"{r.name}: {r.about}" for r in REGIMES.values() if r.name != "main") + ")")
    parser.add_argument("--dry-run", action="store_true", help="print the planned runs and their count; run nothing")
    parser.add_argument("--out", type=Path, help="default: docs/comparison, a regime's docs/comparison/regimes/<name> "
                        "(--smoke: runs/compare-smoke)")
    parser.add_argument("--main-out", type=Path,
                        help="the main protocol's outputs (default: docs/comparison; --smoke: runs/compare-smoke): a "
                        "regime reads its chosen settings there and adds its own summary to its summary.json")
    parser.add_argument("--runs", type=Path, help="finished runs' results (default: <out>/runs, committed)")
    parser.add_argument("--workdir", type=Path, help="stores, checkpoints, logs (default: runs/compare, a regime's "
                        "runs/compare/regimes/<name>; --smoke: runs/compare-smoke/work)")
    parser.add_argument("--grid-points", type=int, help="G: grid points per method, the same for all (default: 4; "
                        "a regime's own)")
    parser.add_argument("--seeds", type=int, help=f"test seeds 0..S-1 (default: {MIN_SEEDS}; a regime's own)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"a trial run: fewer than {MIN_SEEDS} seeds allowed, outputs kept out of docs/")
    parser.add_argument("--dev-samples", type=int, choices=(8, 16), help="samples per dev problem (default: 8)")
    parser.add_argument("--test-samples", type=int, choices=(8, 16), help="samples per test problem (default: 16; a "
                        "regime's own)")
    parser.add_argument("--grpo-max-steps", type=int, help="GRPO's dev runs' steps (default: 64; a regime's own)")
    parser.add_argument("--grpo-dev-freq", type=int, help="GRPO validates on dev every this many steps (default: "
                        "16; a regime's own)")
    parser.add_argument("--job-timeout", type=int, default=4 * 3600, help="seconds per job")
    parser.add_argument("--skip-non-repeat", action="store_true")
    return parser


def finish(args: argparse.Namespace) -> argparse.Namespace:
    """Defaults that depend on the regime: its folders, seeds and sizes."""
    args.regime = REGIMES[args.regime]
    main = args.regime.name == "main"
    args.seeds = args.seeds if args.seeds is not None else args.regime.seeds
    args.given_flags = {flag: getattr(args, flag) for flag in FLAG_DEFAULTS}  # not the regime's: the main protocol's
    for flag, default in {**FLAG_DEFAULTS, **dict(args.regime.flags)}.items():
        if getattr(args, flag) is None:
            setattr(args, flag, default)
    args.main_out = args.main_out or Path("runs/compare-smoke" if args.smoke else "docs/comparison")
    below = Path() if main else Path("regimes") / args.regime.name
    args.out = args.out or args.main_out / below
    args.runs = args.runs or args.out / "runs"
    args.workdir = (args.workdir or Path("runs/compare-smoke/work" if args.smoke else "runs/compare") / below).resolve()
    args.plan = args.regime.plan
    return args


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = finish(cli.parse_args(argv))
    if args.seeds < args.regime.seeds and not args.smoke:
        cli.error(f"--seeds {args.seeds}: the {args.regime.name} protocol needs at least {args.regime.seeds} (--smoke "
                  "for a trial run)")
    command = "python scripts/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        args.plan = resolve_plan(args)
        if args.dry_run:
            dry_run(args)
            return 0
        if args.phase in ("dev", "all"):
            phase_dev(args)
        if args.phase in ("test", "all"):
            phase_test(args)
        if args.phase in ("report", "all"):
            phase_report(args, command)
    except ProtocolError as error:
        print(f"[compare] {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
