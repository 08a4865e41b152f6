"""Benchmark DRIFT's phase 1 (offline multi-turn rollouts) against a bare vLLM ``LLM.generate`` loop.

* ``drift``: ``python -m drift_verl.main recipe=drift platform=cpu`` as a user runs it -- verl's vLLM rollout
  server, the ``drift_feedback`` agent loop, TransferQueue, the trajectory store; the figures are the trainer's
  own phase-1 metrics (``drift/rollout/*``: wall time of the phase, new trajectories, generated tokens), so
  Ray and vLLM start-up are not counted.
* ``bare``: the same multi-turn protocol offline in one process, the way the paper's scripts do it: one
  ``vllm.LLM``; per turn, every unfinished trajectory's conversation goes to one ``generate`` call; answers are
  scored by the same verifier; wrong ones get the same feedback message. Timed from the first turn to the last
  (the ``LLM`` construction is not counted either).

* ``bare-platform``: the bare loop with the ``cpu`` platform's kernel choice in vLLM (``VERL_PLATFORM=cpu``:
  torch's linear on the live weights, as in every DRIFT run; ``bare`` keeps vLLM's own choice, which differs on
  AVX-512 and AMX CPUs, see README "Running on CPU"). ``--arms bare,bare-platform`` measures what that costs.

Same model, prompts, N, T, per-turn token cap and sampling (temperature 1). The two ``--arms`` alternate
(a, b, b, a, ...) and the ratio a/b of trajectories/s and of generated tokens/s is taken per adjacent pair; the
median and range are printed last (target >= 0.9).

    python scripts/bench/rollout.py                   # tiny task, reference policy, 64 prompts x 8, 2 pairs
    python scripts/bench/rollout.py --random-model 256,4 --num-prompts 16   # a model whose forward costs more
    python scripts/bench/rollout.py --arms bare,bare-platform --pairs 3   # vLLM's kernels vs the platform's
    python scripts/bench/rollout.py --smoke           # CI: the untrained tiny model, 8 prompts x 2, one pair
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 0.9


def bare_rollouts(model: str, prompts_file: str, num_prompts: int, n: int, max_turns: int, turn_tokens: int,
                  response_length: int, seed: int) -> dict:
    """The multi-turn protocol with one in-process ``vllm.LLM`` (runs in a subprocess of this script)."""
    import pandas as pd
    from vllm import LLM, SamplingParams

    from drift_verl.core.answers import get_parser
    from drift_verl.tiny.task import FEEDBACK
    from reward_fns.exact import compute_score

    rows = pd.read_parquet(prompts_file).head(num_prompts).to_dict("records")
    # the engine settings verl's rollout server gets from the task and verl's rollout defaults
    llm = LLM(model=model, dtype="bfloat16", max_model_len=320, max_num_batched_tokens=1024, max_num_seqs=256,
              enable_chunked_prefill=True, enable_prefix_caching=True, enforce_eager=True, seed=seed)
    tokenizer = llm.get_tokenizer()
    parse = get_parser("answer")
    conversations = [
        {"messages": [dict(m) for m in row["prompt"]], "truth": row["reward_model"]["ground_truth"],
         "source": row["data_source"], "used": 0, "answers": []}
        for row in rows for _ in range(n)
    ]
    start, generated, active = time.time(), 0, conversations
    for _turn in range(max_turns):
        texts = [tokenizer.apply_chat_template(c["messages"], add_generation_prompt=True, tokenize=False)
                 for c in active]
        prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        params = [SamplingParams(temperature=1.0, max_tokens=min(turn_tokens, response_length - c["used"]))
                  for c in active]
        outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        still = []
        for c, out in zip(active, outputs):
            completion = out.outputs[0]
            generated += len(completion.token_ids)
            c["used"] += len(completion.token_ids)
            c["messages"].append({"role": "assistant", "content": completion.text})
            c["answers"].append(parse(completion.text))  # the loop records each turn's answer for the return
            if compute_score(c["source"], completion.text, c["truth"]) < 1.0 and c["used"] < response_length:
                c["messages"].append({"role": "user", "content": FEEDBACK})
                still.append(c)
        active = still
        if not active:
            break
    return {"wall_s": time.time() - start, "trajectories": len(conversations), "generated_tokens": generated}


def drift_rollouts(args, workdir: Path) -> dict:
    from drift_verl.eval.runs import run_job, tail

    overrides = [
        "recipe=drift", "platform=cpu", f"actor_rollout_ref.model.path={args.model}", "actor_rollout_ref.rollout.dtype=bfloat16",
        f"data.train_files={args.prompts}", f"drift.max_prompts={args.num_prompts}",
        f"actor_rollout_ref.rollout.n={args.n}", f"drift.env.max_turns={args.max_turns}",
        f"drift.env.turn_max_tokens={args.turn_tokens}", f"data.max_response_length={args.response_length}",
        "actor_rollout_ref.rollout.temperature=1.0", f"drift.prompts_per_shard={args.prompts_per_shard}",
        f"data.train_batch_size={args.num_prompts}", f"actor_rollout_ref.actor.ppo_mini_batch_size={args.num_prompts}",
        "trainer.logger=[console,file]", f"drift.seed={args.seed}",
        "drift.epochs=1", "actor_rollout_ref.rollout.val_kwargs.do_sample=false",
        # validation (greedy, short) runs before phase 1 as in the main job, so the rollout servers are warm, as
        # the bare loop's engine is after its start-up profiling run
        "actor_rollout_ref.rollout.val_kwargs.n=1",
        f"trainer.default_local_dir={workdir / 'ckpt'}", f"drift.store_dir={workdir / 'store'}",
    ]
    proc, metrics, _ = run_job(["-m", "drift_verl.main", *overrides], workdir, timeout=args.timeout)
    found = [m for m in metrics.values() if "drift/rollout/wall_s" in m]
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"the DRIFT run failed (exit {proc.returncode}):\n{tail(proc)}")
    m = found[0]
    return {"wall_s": m["drift/rollout/wall_s"], "trajectories": m["drift/rollout/new_trajectories"],
            "generated_tokens": m["drift/rollout/tokens_per_s"] * m["drift/rollout/wall_s"]}


def run_bare(args, workdir: Path, platform_kernels: bool) -> dict:
    out = workdir / "bare.json"
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    env.update(VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1", TOKENIZERS_PARALLELISM="false")
    if platform_kernels:  # drift_verl.platform.vllm_cpu acts in the vLLM process
        env["VERL_PLATFORM"] = "cpu"
    command = [sys.executable, __file__, "--bare-worker", str(out), *sys.argv[1:]]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the bare vLLM loop failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    from drift_verl.tiny import assets

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="default: the embedded reference policy")
    parser.add_argument("--random-model", default=None, metavar="HIDDEN,LAYERS",
                        help="instead: a randomly initialised model of that width and depth with the tiny task's "
                             "tokenizer; it never answers, so every trajectory runs all T turns")
    parser.add_argument("--prompts", default=None, help="RL parquet; default: the embedded task's train split")
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-turns", type=int, default=5)
    parser.add_argument("--turn-tokens", type=int, default=24)
    parser.add_argument("--response-length", type=int, default=192)
    parser.add_argument("--prompts-per-shard", type=int, default=16, help="the recipe's default")
    parser.add_argument("--arms", default="drift,bare", help="the two arms compared: drift, bare, bare-platform")
    parser.add_argument("--pairs", type=int, default=2, help="pairs of runs of the two arms, alternating order")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=1200)
    parser.add_argument("--smoke", action="store_true", help="untrained tiny model, 8 prompts x 2, one pair (CI)")
    parser.add_argument("--bare-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.num_prompts, args.n, args.pairs, args.prompts_per_shard = 8, 2, 1, 8
        args.model = args.model or assets.tiny_model()  # no reference build in CI
    if args.random_model and not args.bare_worker:
        hidden, layers = (int(v) for v in args.random_model.split(","))
        # a forward that costs more than the tiny model's, so per-step compute, not per-request overhead, sets the pace
        args.model = assets.random_model(assets.cache_root() / f"bench_random_{hidden}x{layers}", hidden, layers)
        sys.argv += ["--model", args.model]  # the bare worker (a subprocess) gets the same model
    args.model = args.model or assets.tiny_reference()
    args.prompts = args.prompts or assets.tiny_train()
    if args.bare_worker:
        result = bare_rollouts(args.model, args.prompts, args.num_prompts, args.n, args.max_turns,
                               args.turn_tokens, args.response_length, args.seed)
        Path(args.bare_worker).write_text(json.dumps(result))
        return

    arms = args.arms.split(",")
    if len(arms) != 2 or len(set(arms)) != 2 or not set(arms) <= {"drift", "bare", "bare-platform"}:
        parser.error(f"--arms: two different arms of drift, bare, bare-platform; got {args.arms!r}")
    results = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="drift-rollout-bench-") as tmp:
        for pair in range(args.pairs):
            for arm in arms if pair % 2 == 0 else arms[::-1]:
                workdir = Path(tmp) / f"{arm}-{pair}"
                workdir.mkdir()
                result = (drift_rollouts(args, workdir) if arm == "drift"
                          else run_bare(args, workdir, platform_kernels=arm == "bare-platform"))
                results[arm].append(result)
                print(f"[{arm} {pair}] {result['trajectories']} trajectories, {result['generated_tokens']:.0f} "
                      f"generated tokens in {result['wall_s']:.1f} s", flush=True)

    def rate(result, key):
        return result[key] / result["wall_s"]

    print(f"\nmodel {args.model}; {args.num_prompts} prompts x N={args.n}, T={args.max_turns}, "
          f"{args.turn_tokens} tokens/turn, temperature 1")
    print(f"{'arm':<14}{'trajectories/s':>16}{'gen tokens/s':>14}{'tokens/trajectory':>19}")
    for arm, runs in results.items():
        print(f"{arm:<14}{statistics.median(rate(r, 'trajectories') for r in runs):>16.1f}"
              f"{statistics.median(rate(r, 'generated_tokens') for r in runs):>14.1f}"
              f"{statistics.median(r['generated_tokens'] / r['trajectories'] for r in runs):>19.2f}")
    for key, label in (("trajectories", "trajectories/s"), ("generated_tokens", "generated tokens/s")):
        ratios = [rate(a, key) / rate(b, key) for a, b in zip(results[arms[0]], results[arms[1]])]
        print(f"ratio {arms[0]}/{arms[1]} {label}: median {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f}, target >= {TARGET_RATIO})")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # reward_fns/ when run from a checkout
    main()
