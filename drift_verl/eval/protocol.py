"""The comparison protocol's arithmetic (``scripts/compare.py``): costs, choice on dev, confidence intervals and
verdicts, the summary's schema and the weight-sum spread. Pure functions over recorded run results, no verl and no
jobs, so every number the comparison reports can be checked on small recorded inputs
(``tests/test_compare_summary.py``).

A *result* is what ``scripts/compare.py`` records per finished job, ``docs/comparison/runs/<name>.json``::

    {"name", "phase": "dev" | "test", "method", "seed", "settings": {...}, "split", "val_samples", "argv",
     "job_wall_s", "store": {"folder", "sha256"} (runs on the shared store), "metrics": {step: {metric: value}}}

``metrics`` are verl's file-logger metrics by step, cut to the keys the protocol reads (:func:`compact`). A result
may carry ``"machine_shared": "<what ran beside it>"``: its scores stand, its wall-clock does not (:func:`timed`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from drift_verl.core.metrics import validation_summary
from drift_verl.core.stats import paired_ci, welch_ci

MAX_TURNS = 5
SAMPLES_PER_PROMPT = 8  # N: the task's rollout.n, trajectories per prompt in every training step
SINGLE_ROUND = ("sft_uniform", "sft_rejection", "drift")  # one weighted-SFT round on the shared store
GRPO = ("grpo", "grpo_turn")
METHODS = (*SINGLE_ROUND, "drift_rounds", *GRPO)
SHARED_STORE = (*SINGLE_ROUND, "drift_rounds")  # round 0 trains on the shared store of the reference's rollouts
SUMMARY_METRICS = ("solved_within_1", "solved_within_5", "non_repeat", "step0_solved_within_5", "wall_s",
                   "rollout_tokens")
WALL_METRICS = ("wall_s", "job_wall_s")  # averaged over the runs that had the machine alone (:func:`timed`)
BEST_GRPO = "best_grpo"  # the better of grpo / grpo_turn on dev
DIFFERENCES = {"drift_minus_sft_rejection": ("drift", "sft_rejection"),
               "drift_minus_sft_uniform": ("drift", "sft_uniform"),
               "drift_minus_best_grpo": ("drift", BEST_GRPO),
               "drift_rounds_minus_best_grpo": ("drift_rounds", BEST_GRPO)}
NO_DIFFERENCE = "no difference measurable at this n"
KEPT_PREFIXES = ("drift/rollout/", "drift/weights/", "timing_s/")
KEPT_KEYS = ("drift/update/step_s", "drift/round", "response_length/mean", "critic/score/mean")


@dataclass(frozen=True)
class Plan:
    """What one comparison compares: its methods, the differences it reports (``BEST_GRPO`` stands for the better
    GRPO variant on dev, or the one GRPO of the methods), the method whose test runs validate step 0 (the
    reference's row) and the method the cost ratio to GRPO is measured for. The main protocol compares all; a
    regime of ``scripts/compare.py`` may compare fewer."""

    methods: tuple[str, ...] = METHODS
    differences: dict = field(default_factory=lambda: dict(DIFFERENCES))
    reference_from: str = "drift"
    drift: str = "drift"
    # how often GRPO's replay buffer polled its rollouts (verl's default 2 s; DRIFT's shards 0.5 s): a step's
    # generation ends on a poll, so up to this much of each GRPO step is waiting (:func:`drift_vs_grpo`)
    grpo_poll_s: float = 2.0


MAIN = Plan()


class ProtocolError(ValueError):
    """Results that must not be combined (another store, missing or non-chosen runs); the message says what to do."""


# ---------------------------------------------------------------------------------------------- reading results
def compact(metrics: dict[int, dict]) -> dict[str, dict]:
    """verl's metrics by step, cut to what the protocol reads (validation means, rollout/update costs, timings),
    so that each run's result is small enough to commit."""
    def kept(key: str) -> bool:
        parts = key.split("/")
        validation = len(parts) == 4 and parts[0] in ("val-core", "val-aux") and parts[3].startswith("mean@")
        return validation or key.startswith(KEPT_PREFIXES) or key in KEPT_KEYS

    return {str(step): {k: v for k, v in values.items() if kept(k)} for step, values in sorted(metrics.items())}


def by_step(result: dict) -> dict[int, dict]:
    return {int(step): values for step, values in result["metrics"].items()}


def validation_points(result: dict) -> list[tuple[int, dict]]:
    """(step, the multi-turn metrics of its one data source) at each validation of the run."""
    points = []
    for step, values in sorted(by_step(result).items()):
        summary = validation_summary(values)
        if summary:
            points.append((step, next(iter(summary.values()))))
    return points


def store_cost(store: dict) -> dict:
    """The shared store's rollouts: wall-clock and response tokens of the job that made it."""
    made = next(v for v in by_step(store).values() if "drift/rollout/wall_s" in v)
    return {"wall_s": made["drift/rollout/wall_s"], "rollout_tokens": made["drift/rollout/response_tokens"]}


def _step_wall(metrics: dict) -> float:
    """A GRPO step's wall-clock without its checkpoint (only the seed-0 test runs save one, for non_repeat.py)."""
    return metrics.get("timing_s/step", 0.0) - metrics.get("timing_s/save_checkpoint", 0.0)


def own_cost(result: dict, step: int) -> dict:
    """What a run spent on rollouts and updates up to (the policy after) ``step``, start-up and validation
    excluded, leaving out the shared store (which :func:`cost_at` adds).

    GRPO: each step's ``timing_s/step`` (generation, old log-probs, update, weight sync; validation is timed
    apart; a checkpoint's save is taken out) and its response tokens (``response_length/mean`` x prompts x N).
    DRIFT family: each update step's ``drift/update/step_s``, plus the rollouts of later rounds (iterative DRIFT),
    logged at the step their round starts, which is the previous round's last step: spent after that step's policy,
    before the next step's."""
    metrics = by_step(result)
    if result["method"] in GRPO:
        trajectories = result["settings"]["prompts_per_step"] * SAMPLES_PER_PROMPT
        steps = [m for s, m in metrics.items() if 0 < s <= step]
        return {"wall_s": sum(map(_step_wall, steps)),
                "rollout_tokens": sum(m.get("response_length/mean", 0.0) * trajectories for m in steps)}
    rollouts = [m for s, m in metrics.items() if 0 < s < step and "drift/rollout/wall_s" in m]
    updates = sum(m.get("drift/update/step_s", 0.0) for s, m in metrics.items() if 0 < s <= step)
    return {"wall_s": updates + sum(m["drift/rollout/wall_s"] for m in rollouts),
            "rollout_tokens": float(sum(m["drift/rollout/response_tokens"] for m in rollouts))}


def cost_at(result: dict, step: int, store: dict | None) -> dict:
    """Rollouts + updates up to ``step``; runs on the shared store pay its rollouts (each run is charged the
    store, as a user who trains one method would pay it)."""
    own = own_cost(result, step)
    if result["method"] not in SHARED_STORE:
        return own
    shared = store_cost(store)
    return {key: own[key] + shared[key] for key in own}


def last_step(result: dict) -> int:
    return max(by_step(result))


def points(result: dict, store: dict | None) -> list[dict]:
    """Every validation of a run with the cost spent to reach it."""
    return [{"step": step, **_solved_within(m), "non_repeat": m["non_repeat_ratio"], **cost_at(result, step, store)}
            for step, m in validation_points(result)]


def _solved_within(metrics: dict) -> dict:
    return {f"solved_within_{k}": metrics[f"solved_within_{k}"] for k in range(1, MAX_TURNS + 1)}


def trained_points(result: dict, store: dict | None) -> list[dict]:
    return [p for p in points(result, store) if p["step"] > 0]


def timed(items: list[dict]) -> list[dict]:
    """The runs (or their rows) whose wall-clock counts: those not marked ``machine_shared``, since a job that shared
    the 2 cores ran up to twice as long; all of them when every one was shared (:func:`timing` says so)."""
    alone = [item for item in items if not item.get("machine_shared")]
    return alone or list(items)


# ---------------------------------------------------------------------------------------------- choice on dev
def tuning_entry(result: dict, store: dict | None) -> dict:
    """One grid point's dev score: its last validation; GRPO's best validated step (the earliest of equals), which
    becomes the setting's ``steps``."""
    trained = trained_points(result, store)
    if not trained:
        raise ProtocolError(f"{result['name']}: no validation after training; delete its result and run it again")
    if result["method"] not in GRPO:
        return {"settings": dict(result["settings"]), "dev_solved_within_5": trained[-1]["solved_within_5"]}
    best = max(trained, key=lambda p: p["solved_within_5"])
    return {"settings": {**result["settings"], "steps": best["step"]}, "dev_solved_within_5": best["solved_within_5"],
            "dev_curve": [[p["step"], p["solved_within_5"]] for p in trained]}


def reference_dev(dev: dict[str, list[dict]], plan: Plan = MAIN) -> float | None:
    """The reference's dev solved-within-5: the first grid point of ``plan.reference_from`` validates before
    training."""
    step, metrics = validation_points(dev[plan.reference_from][0])[0]
    return metrics["solved_within_5"] if step == 0 else None


def tuning(dev: dict[str, list[dict]], store: dict | None, plan: Plan = MAIN) -> dict[str, list[dict]]:
    return {method: [tuning_entry(r, store) for r in dev[method]] for method in plan.methods}


def choose(entries: list[dict]) -> dict:
    """The grid point with the best dev solved-within-5 (the first in grid order among equals)."""
    return max(entries, key=lambda e: e["dev_solved_within_5"])


def best_grpo(chosen_entries: dict[str, dict]) -> str | None:
    """The better GRPO variant on dev (``grpo`` among equals) of those chosen: the one DRIFT is measured against
    (None: no GRPO)."""
    variants = [m for m in GRPO if m in chosen_entries]
    return max(variants, key=lambda m: chosen_entries[m]["dev_solved_within_5"], default=None)


def choice(entries: dict[str, list[dict]]) -> tuple[dict[str, dict], str | None]:
    """Each method's chosen setting (:func:`choose`) and the better GRPO variant, from the dev :func:`tuning`."""
    chosen_entries = {method: choose(method_entries) for method, method_entries in entries.items()}
    return {method: entry["settings"] for method, entry in chosen_entries.items()}, best_grpo(chosen_entries)


def tuning_cost(method: str, results: list[dict], store: dict | None) -> dict:
    """The whole dev grid of a method: every run in full (GRPO: all its steps, since its step is chosen from the
    whole curve), the shared store's rollouts once."""
    total = {"rollout_tokens": 0.0, "wall_s": 0.0}
    for result in results:
        for key, value in own_cost(result, last_step(result)).items():
            total[key] += value
    if method in SHARED_STORE:
        for key, value in store_cost(store).items():
            total[key] += value
    return total


# ---------------------------------------------------------------------------------------------- statistics
def verdict(ci: list[float] | None) -> str:
    if ci is not None and ci[0] > 0:
        return "better"
    if ci is not None and ci[1] < 0:
        return "worse"
    return NO_DIFFERENCE


def order_key(method: str, settings: dict, store: dict | None) -> tuple | None:
    """What fixes a run's mini-batches besides its seed: single-round offline methods on one store with the same
    prompts per step and epochs train the same whole groups in the same steps for a seed (None: no such order)."""
    if method not in SINGLE_ROUND:
        return None
    return settings["prompts_per_step"], settings["epochs"], store["sha256"]


def difference(a_rows: list[dict], b_rows: list[dict], paired: bool, metric: str = "solved_within_5") -> dict:
    """a - b on the test split over seeds: paired per seed where both share the order, else Welch's."""
    if paired:
        b_by_seed = {r["seed"]: r[metric] for r in b_rows}
        a_values = [r[metric] for r in a_rows]
        mean, ci = paired_ci(a_values, [b_by_seed[r["seed"]] for r in a_rows])
        n = len(a_values)
    else:
        mean, ci = welch_ci([r[metric] for r in a_rows], [r[metric] for r in b_rows])
        n = min(len(a_rows), len(b_rows))
    return {"mean": mean, "ci95": ci, "verdict": verdict(ci), "paired": paired, "n": n}


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


# ---------------------------------------------------------------------------------------------- test rows
def seed_row(result: dict, store: dict | None, step0: float) -> dict:
    """A test run's numbers at its chosen point: the end of training (GRPO: the chosen step, its last)."""
    final = trained_points(result, store)[-1]
    steps = result["settings"].get("steps")
    if steps is not None and final["step"] != steps:
        raise ProtocolError(f"{result['name']}: last validation at step {final['step']}, not the chosen step {steps}")
    return {"seed": result["seed"], **{k: v for k, v in final.items() if k != "step"},
            "step0_solved_within_5": step0, "job_wall_s": result["job_wall_s"],
            "machine_shared": bool(result.get("machine_shared"))}


def step0_by_seed(test: dict[str, list[dict]], plan: Plan = MAIN) -> dict[int, dict]:
    """The reference's test scores per seed: the step-0 validation of that seed's ``plan.reference_from`` run."""
    found = {}
    for result in test[plan.reference_from]:
        step, metrics = validation_points(result)[0]
        if step != 0:
            raise ProtocolError(f"{result['name']}: no step-0 validation (the reference's test score)")
        found[result["seed"]] = metrics
    return found


def seed_rows(test: dict[str, list[dict]], store: dict | None, plan: Plan = MAIN) -> dict[str, list[dict]]:
    """Per method, one row per test seed (the reference: its step-0 scores, at no cost)."""
    references = step0_by_seed(test, plan)
    rows = {"reference": [{"seed": seed, **_solved_within(m), "non_repeat": m["non_repeat_ratio"],
                           "step0_solved_within_5": m["solved_within_5"], "wall_s": 0.0, "rollout_tokens": 0.0,
                           "job_wall_s": 0.0, "machine_shared": False} for seed, m in sorted(references.items())]}
    for method in plan.methods:
        rows[method] = []
        for result in test[method]:
            first_step, first = validation_points(result)[0]
            step0 = first if first_step == 0 else references[result["seed"]]
            rows[method].append(seed_row(result, store, step0["solved_within_5"]))
    return rows


# ---------------------------------------------------------------------------------------------- frontier and cost
def frontier(test: dict[str, list[dict]], store: dict | None, rows: dict[str, list[dict]],
             plan: Plan = MAIN) -> dict[str, list[dict]]:
    """Test solved-within-5 against cost, mean over seeds (``std`` for error bars), at every trained validation
    the seeds share: GRPO's steps, iterative DRIFT's rounds, one point for the single-round methods; the
    reference at no cost. Wall-clock is the mean over the :func:`timed` seeds."""
    result = {"reference": [{"rollout_tokens": 0.0, "wall_s": 0.0,
                             "solved_within_5": mean_std([r["solved_within_5"] for r in rows["reference"]])["mean"]}]}
    for method in plan.methods:
        by_run = {id(r): {p["step"]: p for p in trained_points(r, store)} for r in test[method]}
        per_seed, clocked = list(by_run.values()), [by_run[id(r)] for r in timed(test[method])]
        shared = sorted(set.intersection(*(set(s) for s in per_seed)))
        curve = []
        for step in shared:
            stats = {key: mean_std([s[step][key] for s in per_seed]) for key in ("rollout_tokens", "solved_within_5")}
            stats["wall_s"] = mean_std([s[step]["wall_s"] for s in clocked])
            curve.append({"step": step, **{key: value["mean"] for key, value in stats.items()},
                          "solved_within_5_std": stats["solved_within_5"]["std"]})
        result[method] = curve
    return result


def grpo_rollout_share(results: Iterable[dict]) -> float:
    """The share of a GRPO step's wall-clock spent generating (``timing_s/gen`` / ``timing_s/step``), mean over runs
    (the report passes the :func:`timed` ones)."""
    shares = []
    for result in results:
        steps = [m for s, m in by_step(result).items() if s > 0 and "timing_s/step" in m]
        shares.append(sum(m.get("timing_s/gen", 0.0) for m in steps) / sum(map(_step_wall, steps)))
    return statistics.fmean(shares)


def cost_to_reach(curve: list[dict], target: float) -> dict | None:
    """The first point of a mean curve whose solved-within-5 reaches ``target``."""
    return next((p for p in curve if p["solved_within_5"] >= target - 1e-9), None)


def drift_vs_grpo(rows: dict[str, list[dict]], curves: dict[str, list[dict]], grpo: str,
                  drift_method: str = "drift", poll_s: float = 0.0) -> dict:
    """DRIFT's cost over the chosen GRPO's cost to reach that GRPO's mean test solved-within-5 (its mean curve's
    first point at or above it); null ratios when DRIFT's mean does not reach it. ``wall_ratio_at_most``: the
    wall-clock ratio had GRPO never waited on its replay buffer's poll (``poll_s`` a step taken off its
    wall-clock, the most the poll can add): the ratio lies between the two."""
    target = statistics.fmean(r["solved_within_5"] for r in rows[grpo])
    drift = {key: statistics.fmean(r[key] for r in rows[drift_method]) for key in ("solved_within_5",
                                                                                  "rollout_tokens")}
    drift["wall_s"] = statistics.fmean(r["wall_s"] for r in timed(rows[drift_method]))
    reached = cost_to_reach(curves[grpo], target)
    ok = drift["solved_within_5"] >= target - 1e-9 and reached is not None
    return {"target_solved_within_5": target, "grpo_variant": grpo,
            "wall_ratio": drift["wall_s"] / reached["wall_s"] if ok else None,
            "wall_ratio_at_most": drift["wall_s"] / (reached["wall_s"] - poll_s * reached["step"]) if ok else None,
            "token_ratio": drift["rollout_tokens"] / reached["rollout_tokens"] if ok else None}


def timing(dev: dict[str, list[dict]] | None, rows: dict[str, list[dict]], plan: Plan = MAIN) -> dict:
    """Which runs' wall-clock the report uses: per method the test seeds that had the machine alone (all seeds,
    flagged, when none did), and the dev runs that shared it (the tuning cost sums them as measured)."""
    per_method = {}
    for method in plan.methods:
        per_method[method] = {"wall_clock_seeds": [r["seed"] for r in timed(rows[method])],
                              "every_run_shared_the_machine": all(r["machine_shared"] for r in rows[method])}
    return {"test": per_method,
            "dev_machine_shared": sorted(r["name"] for runs in (dev or {}).values() for r in runs
                                         if r.get("machine_shared"))}


# ---------------------------------------------------------------------------------------------- weight health
def old_order_steps(shard_sizes: list[int], epoch_seeds: list[int], rows_per_step: int = 32) -> list[list[int]]:
    """Store rows (flat indices) of each step under the order before whole-group steps, one epoch per seed: shards
    in random order, rows shuffled within each shard, 32-row steps (4 prompts x 8), the last partial step left
    out. A step then holds parts of groups, so its weights need not average one."""
    offsets = np.concatenate([[0], np.cumsum(shard_sizes)])
    steps = []
    for seed in epoch_seeds:
        rng = np.random.default_rng(seed)
        shards = rng.permutation(len(shard_sizes))
        order = [int(offsets[s] + r) for s in shards for r in rng.permutation(shard_sizes[s])]
        steps += [order[i:i + rows_per_step] for i in range(0, len(order) - rows_per_step + 1, rows_per_step)]
    return steps


def spread(values: Iterable[float]) -> dict:
    values = np.asarray(list(values), dtype=np.float64)
    quantiles = np.percentile(values, [0, 5, 50, 95, 100])
    return dict(zip(("min", "p5", "median", "p95", "max"), map(float, quantiles)))


def step_weight_spread(weights: np.ndarray, steps: list[list[int]]) -> dict:
    """Spread over steps of (sum of the step's weights) / (its rows): 1 when the step's weights average one."""
    return {"rows_per_step": len(steps[0]), "steps": len(steps),
            **spread(float(np.sum(weights[step])) / len(step) for step in steps)}


def weight_health(weights: np.ndarray, groups: np.ndarray, solved: np.ndarray, diagnostics: dict,
                  old_steps: list[list[int]], group_steps: list[list[int]]) -> dict:
    """The chosen DRIFT setting's weights on the shared store: ESS and all-fail groups (the project's
    diagnostics), groups with exactly one success (whose success then carries the group, weight near N), and the
    per-step weight sums under the old order vs whole-group steps."""
    successes = np.bincount(groups, weights=np.asarray(solved, dtype=np.float64))
    return {"ess_fraction": diagnostics["weights/ess_fraction_mean"],
            "all_fail_group_share": diagnostics["weights/all_fail_group_share"],
            "lone_success_share": float(np.mean(successes == 1)),
            "max_weight": diagnostics["weights/max"],
            "step_weight_sum_per_row": {"old_order": step_weight_spread(weights, old_steps),
                                        "whole_groups": step_weight_spread(weights, group_steps)}}


# ---------------------------------------------------------------------------------------------- the report
def check_store(store: dict, results: Iterable[dict]) -> None:
    """Refuse results trained on another store than the shared one: their differences would mix rollouts."""
    foreign = sorted(r["name"] for r in results if r["method"] in SHARED_STORE and r.get("store") != store["store"])
    if foreign:
        raise ProtocolError(
            f"results trained on another trajectory store than {store['store']['folder']} (sha256 "
            f"{store['store']['sha256'][:12]}): {', '.join(foreign)}. Delete those results to retrain them on this "
            "store, or restore the store they were trained on together with its own result (store.json)")


def check_chosen(test: dict[str, list[dict]], chosen: dict[str, dict], plan: Plan = MAIN) -> None:
    """Every test result is of its method's chosen setting (the test split is spent on nothing else)."""
    stray = sorted(r["name"] for m in plan.methods for r in test[m] if r["settings"] != chosen[m])
    if stray:
        raise ProtocolError(f"test results of settings not chosen on dev: {', '.join(stray)}")


def report(dev: dict[str, list[dict]] | None, test: dict[str, list[dict]], store: dict | None, split: dict,
           health: dict | None, test_store: dict | None = None, plan: Plan = MAIN,
           chosen: dict[str, dict] | None = None) -> dict:
    """Everything the comparison reports (comparison.json), from the dev and test results of every method of the
    plan, the results of the stores their offline runs trained on (``test_store``: the test phase's own; default
    the dev store), the split sizes and the weight health (:func:`summary` keeps the fixed schema). A regime that
    runs settings chosen elsewhere passes ``chosen`` and no dev results: it has no tuning of its own."""
    test_store = test_store or store
    check_store(test_store, [r for runs in test.values() for r in runs])
    entries = None
    if dev is not None:
        check_store(store, [r for runs in dev.values() for r in runs])
        entries = tuning(dev, store, plan)
        chosen, grpo = choice(entries)
    else:
        if chosen is None:
            raise ProtocolError("no dev results and no chosen settings: a comparison without its own tuning is "
                                "given the settings it runs")
        variants = [m for m in GRPO if m in plan.methods]
        if len(variants) > 1:
            raise ProtocolError(f"{' and '.join(variants)} without dev results: a plan without its own tuning names "
                                "one GRPO variant")
        grpo = variants[0] if variants else None
    check_chosen(test, chosen, plan)
    rows = seed_rows(test, test_store, plan)
    curves = frontier(test, test_store, rows, plan)
    sides = {**{m: m for m in plan.methods}, BEST_GRPO: grpo}
    differences = {}
    for name, (a, b) in plan.differences.items():
        a, b = sides[a], sides[b]
        key_a = order_key(a, chosen[a], test[a][0].get("store"))
        paired = key_a is not None and key_a == order_key(b, chosen[b], test[b][0].get("store")) and (
            sorted(r["seed"] for r in rows[a]) == sorted(r["seed"] for r in rows[b]))
        differences[name] = {**difference(rows[a], rows[b], paired), "methods": [a, b]}
    first = test[plan.reference_from]
    return {"split": split, "samples_per_prompt": first[0]["val_samples"], "methods": list(plan.methods),
            "seeds": sorted(r["seed"] for r in rows[plan.reference_from]),
            "store": store["store"] if dev is not None else None, "test_store": test_store["store"],
            "tuning": entries, "reference_dev_solved_within_5": reference_dev(dev, plan) if dev is not None else None,
            "chosen": chosen, "best_grpo": grpo,
            "tuning_cost": {m: tuning_cost(m, dev[m], store) for m in plan.methods} if dev is not None else None,
            "rows": rows, "differences": differences, "frontier": curves,
            "drift_vs_grpo": drift_vs_grpo(rows, curves, grpo, plan.drift, plan.grpo_poll_s) if grpo else None,
            "grpo_rollout_share": grpo_rollout_share(timed(test[grpo])) if grpo else None,
            "grpo_poll_s": plan.grpo_poll_s, "weight_health": health,
            "timing": timing(dev, rows, plan)}


def summary(full: dict) -> dict:
    """docs/comparison/summary.json: the fixed schema (validation_prompts and samples_per_prompt describe the
    test split). A regime's plan gives only its methods' rows; without its own tuning, ``tuning`` and
    ``tuning_cost`` are null, and without a GRPO, ``drift_vs_grpo`` and ``grpo_rollout_share``."""
    methods = {name: {metric: mean_std([r[metric] for r in (timed(rows) if metric in WALL_METRICS else rows)])
                      for metric in SUMMARY_METRICS} for name, rows in full["rows"].items()}
    return {"validation_prompts": full["split"]["test_problems"], "samples_per_prompt": full["samples_per_prompt"],
            "seeds": full["seeds"], "methods": methods,
            "drift_vs_grpo": {k: full["drift_vs_grpo"][k] for k in ("target_solved_within_5", "wall_ratio",
                                                                    "wall_ratio_at_most", "token_ratio")}
            if full["drift_vs_grpo"] else None,
            "split": full["split"],
            "tuning": {m: [{k: e[k] for k in ("settings", "dev_solved_within_5")} for e in entries]
                       for m, entries in full["tuning"].items()} if full["tuning"] is not None else None,
            "chosen": full["chosen"], "tuning_cost": full["tuning_cost"],
            "differences": {name: {k: d[k] for k in ("mean", "ci95", "verdict", "paired", "n")}
                            for name, d in full["differences"].items()},
            "frontier": {m: [{k: p[k] for k in ("rollout_tokens", "wall_s", "solved_within_5")} for p in curve]
                         for m, curve in full["frontier"].items()},
            "grpo_rollout_share": full["grpo_rollout_share"], "weight_health": full["weight_health"],
            "timing": full["timing"]}
