"""Benchmark DRIFT's weighted-SFT update against verl's own actor update with its plain (vanilla PPO) loss.

Both arms run in this one process on the same verl actor: verl's ``ActorRolloutRefWorker`` (role ``actor``)
built from drift-verl's ``recipe=drift platform=cpu`` config, i.e. verl's FSDP2 engine on drift-verl's cpu
platform, world size 1. Same model, same rows, same mini-batch and micro-batch sizes, same sequence lengths;
only the update path differs:

* ``drift``: what ``DriftTrainer`` does per mini-batch (its own ``_update`` method is called): build the padded
  batch from stored rows (``drift_verl.core.loss.padded_batch``, weights in ``advantages``), convert it to verl's
  no-padding layout and call ``update_actor`` with the ``drift`` policy loss -- one call per mini-batch;
* ``vanilla``: what verl's GRPO/PPO trainer does per step: one ``update_actor`` call on the whole step batch
  (already in verl's layout, ``old_log_probs`` from the actor, advantages per trajectory), split into the same
  mini-batches by verl, with verl's default ``vanilla`` policy loss (clipped ratio).

One epoch = ``--mini-batches`` mini-batches of ``--mini-batch`` trajectories. The arms alternate (A B B A ...)
after ``--warmup`` untimed epochs each; the medians of the epoch times give tokens/s (all prompt + response tokens the
model runs on); the ratio drift/vanilla of tokens/s is the median over adjacent pairs of epochs (robust to a
machine whose speed drifts), printed last with its range (target >= 0.95).

    python scripts/bench/update.py                  # the tiny model and a wider one (hidden 256, 4 layers)
    python scripts/bench/update.py --smoke          # CI: tiny model, 2 mini-batches, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("VERL_PLATFORM", "cpu")  # before verl is imported
for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                   "MASTER_ADDR": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)

import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET_RATIO = 0.95
MODELS = {"tiny": None, "wide": {"hidden": 256, "layers": 4}}  # tiny: drift_verl.tiny.assets.tiny_model()


def model_path(name: str, workdir: Path) -> str:
    from drift_verl.tiny import assets

    tiny = assets.tiny_model()
    if MODELS[name] is None:
        return tiny
    out = workdir / f"model-{name}"
    if not (out / "config.json").exists():
        tmp = Path(tempfile.mkdtemp(dir=workdir))
        for item in Path(tiny).iterdir():  # the tiny model's tokenizer
            if "token" in item.name or item.name.endswith(".jinja"):
                shutil.copy(item, tmp / item.name)
        from transformers import AutoTokenizer

        assets.build_model(tmp, vocab_size=len(AutoTokenizer.from_pretrained(tiny)), **MODELS[name])
        os.replace(tmp, out)
    return str(out)


def synthetic_rows(count: int, vocab: int, prompt_len: int, response_len: int, rng) -> list[dict]:
    """Stored-trajectory rows: random tokens, 1-5 assistant turns separated by (masked) feedback."""
    rows = []
    for _ in range(count):
        prompt = rng.integers(3, vocab, size=int(rng.integers(prompt_len // 2, prompt_len + 1))).tolist()
        length = int(rng.integers(response_len // 2, response_len + 1))
        turns = int(rng.integers(1, 6))
        bounds = np.linspace(0, length, turns + 1).astype(int)
        mask, spans = [0] * length, []
        for start, end in zip(bounds[:-1], bounds[1:]):
            answer_end = start + max(1, (end - start) * 2 // 3)  # the rest of the turn is feedback
            spans.append([int(start), int(answer_end)])
            mask[start:answer_end] = [1] * (answer_end - start)
        rows.append({"prompt_ids": prompt, "response_ids": rng.integers(3, vocab, size=length).tolist(),
                     "response_mask": mask, "turn_spans": spans})
    return rows


def compose_config(model: str, args):
    from hydra import compose, initialize_config_module

    overrides = [
        "recipe=drift", "platform=cpu",
        f"actor_rollout_ref.model.path={model}",
        f"actor_rollout_ref.rollout.n={args.n}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.mini_batch // args.n}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={args.micro_batch}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={args.micro_batch}",
        f"data.max_prompt_length={args.prompt_len}",
        f"data.max_response_length={args.response_len}",
        f"actor_rollout_ref.rollout.max_model_len={args.prompt_len + args.response_len}",
    ]
    with initialize_config_module(config_module="recipes", version_base=None):
        return compose(config_name="drift_main", overrides=overrides)  # resolved lazily: only what is used


class Bench:
    """One verl actor, both update paths."""

    def __init__(self, model: str, args):
        import verl  # noqa: F401  (drift-verl's plugin: cpu platform, the `drift` loss)
        from omegaconf import OmegaConf
        from transformers import AutoTokenizer
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.engine_workers import ActorRolloutRefWorker
        from verl.workers.utils.losses import ppo_loss

        with socket.socket() as probe:  # a free port for this process's own gloo group
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
        self.args, self.config = args, compose_config(model, args)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.worker = ActorRolloutRefWorker(config=self.config.actor_rollout_ref, role="actor")
        self.worker.init_model()
        actor = self.config.actor_rollout_ref.actor
        assert actor.policy_loss.loss_mode == "drift" and actor.entropy_coeff == 0
        vanilla = OmegaConf.merge(actor, {"policy_loss": {"loss_mode": "vanilla"}})
        self.loss = {"drift": partial(ppo_loss, config=omega_conf_to_dataclass(actor)),
                     "vanilla": partial(ppo_loss, config=omega_conf_to_dataclass(vanilla))}
        rng = np.random.default_rng(0)
        self.rows = synthetic_rows(args.mini_batch * args.mini_batches, len(self.tokenizer), args.prompt_len,
                                   args.response_len, rng)
        self.weights = np.exp(rng.normal(size=len(self.rows)))  # weights ~ exp(R/beta), mean about 1 per group
        self.weights /= self.weights.mean()
        self.store = self._write_store(Path(tempfile.mkdtemp(dir=args.workdir, prefix="update-store-")))
        tensors = self._padded(self.weights)
        self.tokens = int(tensors["attention_mask"].sum())
        self.old_log_probs = self._old_log_probs()

    def _write_store(self, root: Path):
        """The rows as a trajectory store (the trainer's phase 3 reads its mini-batches from one)."""
        from drift_verl.core.store import TrajectoryStore

        n = self.args.n
        store = TrajectoryStore(root, {"bench": "update"}, len(self.rows) // n, prompts_per_shard=16)
        filler = {"data_source": "bench", "ground_truth": "0", "turn_rewards": [0.0], "answers": ["0"],
                  "format_penalty": 0.0, "t_star": 0, "verifier_failures": 0, "messages": "[]"}
        for index in range(store.num_shards):
            prompts = store.shard_prompts(index)
            store.write_shard(index, [{**filler, **row, "prompt_id": str(i // n), "sample": i % n}
                                      for i, row in enumerate(self.rows) if i // n in prompts])
        return store

    def _padded(self, weights):
        from drift_verl.core.loss import padded_batch

        return padded_batch(self.rows, weights, self.args.prompt_len, self.args.response_len,
                            self.tokenizer.pad_token_id, "all")

    def _verl_batch(self, tensors):
        from verl.protocol import DataProto
        from verl.workers.utils.padding import left_right_2_no_padding

        return left_right_2_no_padding(DataProto.from_dict(tensors=tensors).to_tensordict())

    def _old_log_probs(self) -> torch.Tensor:
        """What verl's trainer computes before the update: the actor's log-probs of the step batch."""
        from verl.utils import tensordict_utils as tu
        from verl.workers.utils.padding import no_padding_2_padding

        batch = self._verl_batch(self._padded(self.weights))
        tu.assign_non_tensor(batch, calculate_entropy=False, compute_loss=False, temperature=1.0)
        output = self.worker.compute_log_prob(batch)
        return no_padding_2_padding(output["log_probs"], batch).detach()

    def epoch_drift(self) -> float:
        """The trainer's phase 3: rows read from the store shard by shard, then DriftTrainer._update per
        mini-batch (building the batch and converting it to verl's layout are timed too)."""
        from drift_verl.core.config import DriftConfig
        from drift_verl.integration.training.trainer import TRAIN_COLUMNS, DriftTrainer

        size = self.args.mini_batch
        trainer = SimpleNamespace(
            config=self.config, tokenizer=self.tokenizer, actor_rollout_wg=self.worker,
            drift=DriftConfig(train_turns="all", seed=0),  # the defaults of every other drift: option
        )
        self.worker.set_loss_fn(self.loss["drift"])
        start = time.perf_counter()
        rows = [row for shard in range(self.store.num_shards)
                for row in self.store.read_shard(shard, TRAIN_COLUMNS).to_pylist()]
        for step in range(self.args.mini_batches):
            picks = slice(step * size, (step + 1) * size)
            metrics = DriftTrainer._update(trainer, rows[picks], self.weights[picks])
        elapsed = time.perf_counter() - start
        assert "actor/drift/nll" in metrics, sorted(metrics)  # the drift loss ran
        return elapsed

    def epoch_vanilla(self) -> float:
        """verl's trainer update: one update_actor call over the step batch, verl splitting the mini-batches."""
        from verl.utils import tensordict_utils as tu

        # GRPO-like advantages: one standardised score per trajectory on its response tokens
        score = torch.as_tensor(np.random.default_rng(1).normal(size=len(self.rows)), dtype=torch.float32)
        tensors = self._padded(np.ones(len(self.rows)))
        tensors["advantages"] = score.unsqueeze(1) * tensors["response_mask"]
        tensors["old_log_probs"] = self.old_log_probs
        batch = self._verl_batch(tensors)  # in verl's trainer the batch is already in this layout
        size = self.args.mini_batch
        tu.assign_non_tensor(batch, calculate_entropy=False, distillation_use_topk=False, distillation_only=False,
                             global_batch_size=size, mini_batch_size=size, epochs=1, seed=0,
                             dataloader_kwargs={"shuffle": False}, temperature=1.0)
        self.worker.set_loss_fn(self.loss["vanilla"])
        start = time.perf_counter()
        output = self.worker.update_actor(batch)
        elapsed = time.perf_counter() - start
        assert "pg_clipfrac" in str(sorted(tu.get(output, "metrics"))), "the vanilla loss did not run"
        return elapsed


def run(model_name: str, args, workdir: Path) -> dict:
    bench = Bench(model_path(model_name, workdir), args)
    try:
        return _alternate(bench, model_name, args)
    finally:
        shutil.rmtree(bench.store.root, ignore_errors=True)


def _alternate(bench: Bench, model_name: str, args) -> dict:
    arms = {"drift": bench.epoch_drift, "vanilla": bench.epoch_vanilla}
    times = {"drift": [], "vanilla": []}
    for _ in range(args.warmup):
        for arm in arms.values():
            arm()
    pair_ratios = []  # drift tokens/s over vanilla tokens/s of two adjacent epochs: robust to a drifting machine
    for repeat in range(args.repeats):
        order = ["drift", "vanilla"] if repeat % 2 == 0 else ["vanilla", "drift"]
        for name in order:
            times[name].append(arms[name]())
            print(f"[{model_name}] epoch {repeat + 1}/{args.repeats} {name}: {times[name][-1]:.2f} s", flush=True)
        pair_ratios.append(times["vanilla"][-1] / times["drift"][-1])
    result = {"model": model_name, "tokens": bench.tokens, "ratio": statistics.median(pair_ratios),
              "ratio_min": min(pair_ratios), "ratio_max": max(pair_ratios)}
    for name, values in times.items():
        result[name] = {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values),
                        "tokens_per_s": bench.tokens / statistics.median(values)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,wide", help=f"comma-separated, from {sorted(MODELS)}")
    parser.add_argument("--mini-batch", type=int, default=16, help="trajectories per mini-batch")
    parser.add_argument("--n", type=int, default=4, help="rollout.n (mini-batch = ppo_mini_batch_size x n)")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--mini-batches", type=int, default=4, help="mini-batches per epoch")
    parser.add_argument("--prompt-len", type=int, default=96)
    parser.add_argument("--response-len", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=15, help="timed epochs per arm")
    parser.add_argument("--warmup", type=int, default=2, help="untimed epochs per arm first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared machine, threads spinning against other jobs' threads "
                             "made single epochs 30x slower)")
    parser.add_argument("--workdir", default="/tmp/drift_bench")
    parser.add_argument("--smoke", action="store_true", help="CI: tiny model, 2 mini-batches of 8, 1 repeat")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.mini_batch, args.mini_batches, args.repeats, args.warmup = "tiny", 8, 2, 1, 1
        args.prompt_len, args.response_len = 32, 64
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    results = [run(name, args, workdir) for name in args.models.split(",")]

    print(f"\nupdate: one epoch = {args.mini_batches} mini-batches x {args.mini_batch} trajectories, micro-batch "
          f"{args.micro_batch}, prompt <= {args.prompt_len}, response <= {args.response_len} tokens, "
          f"{torch.get_num_threads()} torch threads; median of {args.repeats} epochs per arm")
    print(f"{'model':>6} {'arm':>8} {'tokens':>7} {'median s':>9} {'min s':>7} {'max s':>7} {'tokens/s':>9}")
    for r in results:
        for name in ("drift", "vanilla"):
            t = r[name]
            print(f"{r['model']:>6} {name:>8} {r['tokens']:>7} {t['median_s']:>9.3f} {t['min_s']:>7.3f} "
                  f"{t['max_s']:>7.3f} {t['tokens_per_s']:>9.0f}")
    for r in results:  # the ratio: median over adjacent (drift, vanilla) epoch pairs
        print(f"{r['model']}: drift {r['drift']['tokens_per_s']:.0f} tokens/s vs vanilla "
              f"{r['vanilla']['tokens_per_s']:.0f} tokens/s ratio {r['ratio']:.3f} "
              f"[{r['ratio_min']:.3f}-{r['ratio_max']:.3f}] (target >= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
