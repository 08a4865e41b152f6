"""What a DRIFT run tells its user: the reference policy's quality from the store, and the end-of-run summary."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc

from drift_verl.core.metrics import multi_turn_metrics, validation_summary
from drift_verl.core.stats import validation_gain
from drift_verl.core.store import TrajectoryStore

NON_REPEAT_NOTE = ("    non_repeat_ratio counts new answers after feedback in the conversations that reach turn 2; a "
                   "policy that solves more\n    at turn 1 leaves harder ones there, so it can fall with no more "
                   "repeating")
REPEATS = "repeats_fixed_context"  # share of second answers repeating the rejected first one
HF_CHECKPOINT_HINT = "add hf_model to actor_rollout_ref.actor.checkpoint.save_contents"


def rollout_quality(store: TrajectoryStore, max_turns: int) -> tuple[dict, dict]:
    """(the reference policy's multi-turn metrics, the logged metrics incl. the store's size: what it cost)."""
    rewards, answers, failures, generated, response = [], [], 0, 0, 0
    for table in store.iter_columns(["turn_rewards", "answers", "verifier_failures", "response_mask"]):
        columns = table.select(["turn_rewards", "answers", "verifier_failures"]).to_pydict()
        rewards += columns["turn_rewards"]
        answers += columns["answers"]
        failures += sum(columns["verifier_failures"])
        mask = table.column("response_mask")
        generated += pc.sum(pc.list_flatten(mask)).as_py() or 0
        response += pc.sum(pc.list_value_length(mask)).as_py() or 0
    if store.absent_fields:  # another agent loop: one reward per trajectory, no turns' answers
        finals = [r[-1] if r else 0.0 for r in rewards]
        metrics = {"solved": sum(r >= 1.0 for r in finals) / max(len(finals), 1),
                   "mean_reward": sum(finals) / max(len(finals), 1)}
    else:
        metrics = multi_turn_metrics(rewards, answers, max_turns)
    logged = {f"drift/reference/{k}": v for k, v in metrics.items()}
    logged.update({"drift/rollout/verifier_failures": failures, "drift/rollout/trajectories": len(rewards),
                   # assistant tokens; response tokens also count feedback, as verl's response_length does
                   "drift/rollout/generated_tokens": generated, "drift/rollout/response_tokens": response})
    return metrics, logged


UNSCORED_BY_TURN = "per-turn metrics unavailable: its agent loop records no turns"


def scores_without_turns(metrics: dict) -> dict[str, float]:
    """Per data source another agent loop than drift_feedback scored, verl's validation mean of its reward
    (``val-core/<source>/<reward key>/mean@N``): all there is to show for it."""
    turn_scored = validation_summary(metrics)
    return {key.split("/")[1]: float(value) for key, value in metrics.items()
            if key.startswith("val-core/") and key.split("/")[-1].startswith("mean@")
            and key.split("/")[1] not in turn_scored}


def validation_line(step: int, metrics: dict, seconds: float) -> str:
    """One line per validation: per data source scored by the feedback loop, solved within the first turn and
    within all turns, and the non-repeat ratio (verl's own line holds hundreds of metrics); per source scored
    by another agent loop, its mean reward."""
    parts = []
    for source, values in validation_summary(metrics).items():
        turns = sorted(int(n.rsplit("_", 1)[1]) for n in values if n.startswith("solved_within_"))
        shown = [f"solved<={t} {values[f'solved_within_{t}']:.3f}" for t in dict.fromkeys([turns[0], turns[-1]])]
        if "non_repeat_ratio" in values:
            shown.append(f"non-repeat {values['non_repeat_ratio']:.3f}")
        parts.append(f"{source}: " + ", ".join(shown))
    parts += [f"{source}: reward {value:.3f} ({UNSCORED_BY_TURN})"
              for source, value in scores_without_turns(metrics).items()]
    return f"[drift] validation at step {step}: " + ("; ".join(parts) or "done") + f" ({seconds:.0f} s)"


def validation_gains(directory: str | None, validation_history: list[tuple[int, dict]],
                     max_turns: int) -> dict[str, dict]:
    """Per data source, the change in solved within ``max_turns`` turns from the first to the last validation,
    paired by problem (:func:`drift_verl.core.stats.validation_gain`), from verl's validation dumps
    (``trainer.validation_data_dir``: ``<step>.jsonl``); empty without two validations and their dumps."""
    steps = sorted({step for step, _ in validation_history})
    if not directory or len(steps) < 2:
        return {}
    dumps = [Path(directory) / f"{step}.jsonl" for step in (steps[0], steps[-1])]
    if not all(dump.is_file() for dump in dumps):
        return {}
    try:  # a file the run did not write as verl writes it: no gain line, rather than a finished run ending failed
        before, after = ([json.loads(line) for line in dump.read_text().splitlines() if line.strip()] for dump in dumps)
        return validation_gain(before, after, f"solved_within_{max_turns}")
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def fixed_context_repeats(store: TrajectoryStore, reference: str, checkpoint: Path, contexts: int,
                          max_new_tokens: int | None, answer_format: str) -> dict:
    """The reference policy (a Hugging Face folder) and the policy of ``checkpoint`` (verl's
    ``global_step_N`` folder) on the same fixed turn-2 contexts of ``store``
    (:func:`drift_verl.eval.non_repeat.compare`); ``{"unavailable": why}`` when either cannot be read: a finished
    run reports, it does not fail here."""
    from drift_verl.eval.non_repeat import compare

    trained = checkpoint / "actor" / "huggingface"
    if not (trained / "config.json").is_file():
        return {"unavailable": f"{trained} holds no model ({HF_CHECKPOINT_HINT})"}
    try:
        result = compare(store, reference, str(trained), contexts, max_new_tokens or 64, answer_format)
    except (OSError, ValueError) as error:
        return {"unavailable": f"{type(error).__name__}: {error}"}
    return result or {"unavailable": "no trajectory in the store had a parseable wrong first answer"}


def _repeat_lines(repeats: dict) -> list[str]:
    """Two lines like the metrics' and the gain's above them: the share of second answers that repeat the
    rejected first one, on the same contexts for both policies."""
    if "unavailable" in repeats:
        return [f"    {REPEATS:<24s} unavailable: {repeats['unavailable']}"]
    interval = ("no interval: one context" if repeats["ci"] is None
                else f"95% CI {repeats['ci'][0]:+.3f} to {repeats['ci'][1]:+.3f}")
    return [f"    {REPEATS:<24s} {repeats['before']:6.3f} -> {repeats['after']:6.3f}",
            f"    change in {REPEATS}: {repeats['change']:+.3f} ({interval}; paired over the same {repeats['contexts']} "
            f"turn-2 contexts x {repeats['samples']} answers)"]


def summary(phase_times: dict[str, float], validation_history: list[tuple[int, dict]], run_dir: Path | None,
            store: TrajectoryStore | None, gains: dict[str, dict] | None = None, repeats: dict | None = None) -> str:
    """Time per phase, validation from the first to the last point (with ``gains``, the change in solved within
    T turns and its 95% interval, paired by problem; with ``repeats``, :func:`fixed_context_repeats`), and where
    the outputs are (``run_dir``: None when nothing was trained)."""
    lines = ["", "=" * 72, "DRIFT finished"]
    for name, seconds in phase_times.items():
        lines.append(f"  {name:<40s} {seconds:8.1f} s")
    if validation_history:
        (first_step, first), (last_step, last) = validation_history[0], validation_history[-1]
        before, after = validation_summary(first), validation_summary(last)
        for source, values in after.items():
            lines.append(f"  validation {source}: step {first_step} -> step {last_step}")
            solved = [n for n in values if n.startswith("solved_within_")]
            for name, value in ((n, values[n]) for n in [*solved, "non_repeat_ratio"] if n in values):
                lines.append(f"    {name:<24s} {before.get(source, {}).get(name, float('nan')):6.3f} -> {value:6.3f}")
            gain = (gains or {}).get(source)
            if gain is not None:
                interval = ("no interval: one problem" if gain["ci"] is None
                            else f"95% CI {gain['ci'][0]:+.3f} to {gain['ci'][1]:+.3f}")
                lines.append(f"    change in {solved[-1]}: {gain['gain']:+.3f} ({interval}; paired over "
                             f"{gain['problems']} problems)")
            if "non_repeat_ratio" in values and first_step != last_step:
                lines.append(NON_REPEAT_NOTE + ("; the fixed contexts below do not" if repeats
                                                 else " (drift.non_repeat_contexts fixes the contexts)"))
        before = scores_without_turns(first)
        for source, value in scores_without_turns(last).items():
            lines.append(f"  validation {source}: step {first_step} -> step {last_step}: reward "
                         f"{before.get(source, float('nan')):6.3f} -> {value:6.3f} ({UNSCORED_BY_TURN})")
    if repeats:
        lines += _repeat_lines(repeats)
    if run_dir is not None:
        lines.append(f"  checkpoints: {run_dir.resolve()}")
    if store is not None:
        lines.append(f"  trajectory store: {store.dir.resolve()}")
    if run_dir is not None:
        lines.append(f"  plots: {(run_dir / 'plots').resolve()}")
    lines.append("=" * 72)
    return "\n".join(lines)
