"""The embedded default's reference policy: the tiny model warm-started with verl's own SFT trainer.

``verl.trainer.sft_trainer`` runs under torchrun on the ``cpu`` platform over noisy multi-turn demonstrations
(:mod:`drift_verl.tiny.task`), then its Hugging Face export becomes the cached asset. The SFT run keeps its
checkpoints in the build folder, so a build killed halfway resumes from verl's last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from drift_verl.core.safe_io import locked
from drift_verl.tiny import task as tiny_task

NUM_DEMOS = 38400
DEMO_SEED = 3
SFT_SETTINGS = {
    "data.train_batch_size": 64,
    "data.micro_batch_size_per_gpu": 64,
    "data.max_length": 144,
    "trainer.total_epochs": 1,  # 600 steps, each demonstration seen once
    "optim.lr": 3e-3,
    "optim.betas": "[0.9,0.95]",  # a short memory of the format tokens' early, large gradients
    "optim.lr_warmup_steps_ratio": 0.05,
    "optim.lr_scheduler_type": "cosine",  # 0.206 at turn 1 on dev where constant gave 0.127; fine-tune well below 3e-3
}
# the informative-feedback reference: the reference fine-tuned on InformedDemonstrator's conversations (higher_lower).
# 600 steps at 2e-3: 150 steps at 1e-3 learned the messages but hardly their direction (README "Informative feedback")
INFORMED = {"num_demos": 38400, "seed": 4,
            "sft": {"optim.lr": 2e-3, "data.max_length": 192}}  # its feedback messages are longer
# the rollout-heavy reference: the reference fine-tuned on WorkedDemonstrator's conversations (partial sums before
# the tagged answer and their check, ~43 tokens a turn), as the informative one is
WORKED = {"num_demos": 38400, "seed": 5, "sft": {"optim.lr": 2e-3, "data.max_length": 320}}


def sft_command(model: str, demos: Path, checkpoints: Path, settings: dict) -> list[str]:
    """torchrun + verl's SFT trainer with the overrides a 2-core CPU needs (see README, platform=cpu)."""
    overrides = {
        "model.path": model,
        "+model.override_config.attn_implementation": "sdpa",
        "model.use_remove_padding": False,
        "model.enable_gradient_checkpointing": False,
        "engine.strategy": "fsdp2",
        "++engine.mixed_precision.param_dtype": "fp32",  # bf16 matmuls take CPUs' slow path
        "engine.use_torch_compile": False,
        "data.train_files": str(demos),
        "data.val_files": "null",
        "data.messages_key": "messages",
        "data.use_dynamic_bsz": False,
        "data.pad_mode": "no_padding",
        "data.num_workers": 0,
        "trainer.device": "cpu",
        "trainer.logger": "[console]",
        "trainer.project_name": "drift_tiny_reference",
        "trainer.experiment_name": "sft",
        "trainer.default_local_dir": str(checkpoints),
        "trainer.save_freq": 100,
        "trainer.resume_mode": "auto",
        "checkpoint.save_contents": "[model,optimizer,extra,hf_model]",
        **settings,
    }
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
            "-m", "verl.trainer.sft_trainer", *(f"{key}={value}" for key, value in overrides.items())]


STALL_S = 600  # no new SFT step for this long: the build is stuck (verl's trainer has no timeout of its own)
_STEP = re.compile(rb"step:(\d+) ")


def run_with_progress(command: list[str], env: dict, cwd: Path, log_path: Path, total_steps: int) -> int:
    """Run verl's SFT trainer with its output in ``log_path`` and its steps as a progress bar (with ETA) on the
    console; a trainer that logs no step for ``STALL_S`` seconds is killed. Returns its exit code."""
    from drift_verl.integration.job import console

    with open(log_path, "ab") as log, open(log_path, "rb") as reader:
        reader.seek(0, os.SEEK_END)
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        last_change = time.monotonic()
        with console.progress(total=total_steps, desc="[drift-verl] reference policy: verl SFT steps", unit="step",
                              file=sys.stderr) as bar:
            while proc.poll() is None:
                time.sleep(1)
                steps = [int(m) for m in _STEP.findall(reader.read())]
                if steps and steps[-1] > bar.n:
                    bar.update(steps[-1] - bar.n)
                    last_change = time.monotonic()
                elif time.monotonic() - last_change > STALL_S:
                    proc.kill()
                    proc.wait()
                    raise RuntimeError(f"verl's SFT trainer logged no step for {STALL_S} s: killed; log: {log_path}")
    return proc.returncode


def latest_export(checkpoints: Path) -> Path:
    steps = sorted(checkpoints.glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not steps or not (steps[-1] / "huggingface" / "config.json").exists():
        raise RuntimeError(f"verl's SFT trainer left no Hugging Face export under {checkpoints}")
    return steps[-1] / "huggingface"


RECORD = "drift_reference.json"  # in each built reference: what it was built from (:func:`recipe`)


def recipe(base_model: str, num_demos: int, sft: dict | None, demonstrator: tiny_task.Demonstrator,
           seed: int) -> dict:
    """What a reference is built from, as its record keeps it: the demonstrator and its settings, the number of
    demonstrations and their seed, verl's SFT settings, and the base model's own recipe (a reference fine-tuned from
    another; None for the untrained tiny model). The base model's path is kept beside it, not compared: it differs
    by machine."""
    try:
        base = json.loads((Path(base_model) / RECORD).read_text())
        base.pop("base_model", None)
    except (OSError, ValueError):
        base = None
    return {"demonstrator": {"class": type(demonstrator).__name__, **demonstrator.__dict__}, "num_demos": num_demos,
            "seed": seed, "sft": {**SFT_SETTINGS, **(sft or {})}, "base": base}


def changed_recipe(out: Path, expected: dict) -> list[str]:
    """What of the :func:`recipe` ``expected`` a cached reference (or an interrupted build's folder) was built
    without, from its record: one made by an older drift-verl, e.g. before the worked demonstrations gained their
    check, is built again rather than used for the new recipe. A record written before a key (or the demonstrator's
    class) was recorded is judged by what it holds, so references built then stay cached."""
    try:
        found = json.loads((out / RECORD).read_text())
    except (OSError, ValueError):
        return ["recipe (no readable " + RECORD + ")"]
    expected = json.loads(json.dumps(expected))
    if isinstance(found.get("demonstrator"), dict) and "class" not in found["demonstrator"]:
        expected["demonstrator"].pop("class")
    return [key for key in expected if key in found and found[key] != expected[key]]


def build_reference(out: Path, base_model: str, num_demos: int = NUM_DEMOS, sft: dict | None = None,
                    demonstrator: tiny_task.Demonstrator = tiny_task.Demonstrator(), seed: int = DEMO_SEED) -> str:
    """Path of the reference policy ``base_model`` warm-started on ``num_demos`` of ``demonstrator``'s
    conversations (from the tiny model: the default reference; from that reference: a fine-tuned one, e.g. on
    informative feedback); trained once (a few minutes on 2 cores), then cached."""
    out = Path(out)
    wanted = recipe(base_model, num_demos, sft, demonstrator, seed)
    sft = wanted["sft"]
    with locked(out):
        if (out / "config.json").exists():
            changed = changed_recipe(out, wanted)
            if not changed:
                return str(out)
            print(f"[drift-verl] the cached reference policy {out} was built with another {', '.join(changed)}; "
                  "building it again", file=sys.stderr, flush=True)
            shutil.rmtree(out)
        work = out.with_name(out.name + ".build")  # an interrupted build resumes here, if it had the same recipe
        if work.exists() and changed_recipe(work, wanted):
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        (work / RECORD).write_text(json.dumps(wanted))
        demos = work / "demos.parquet"
        if not demos.exists():
            import pandas as pd

            rows = tiny_task.demonstration_rows(num_demos, seed, demonstrator)
            pd.DataFrame(rows).to_parquet(demos.with_suffix(".tmp"))
            os.replace(demos.with_suffix(".tmp"), demos)
        command = sft_command(base_model, demos, work / "checkpoints", sft)
        print(f"[drift-verl] warm-starting the reference policy with verl's SFT trainer, once (cached; log: "
              f"{work / 'sft.log'})", file=sys.stderr, flush=True)
        env = {**os.environ, "VERL_PLATFORM": "cpu", "CUDA_VISIBLE_DEVICES": ""}
        steps = math.ceil(num_demos / int(sft["data.train_batch_size"])) * int(sft["trainer.total_epochs"])
        code = run_with_progress(command, env, work, work / "sft.log", steps)
        if code != 0:
            tail = (work / "sft.log").read_text()[-3000:]
            raise RuntimeError(f"verl's SFT trainer failed (exit {code}); last lines:\n{tail}")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(latest_export(work / "checkpoints"), tmp)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            if (Path(base_model) / name).exists() and not (tmp / name).exists():
                shutil.copy(Path(base_model) / name, tmp / name)
        (tmp / RECORD).write_text(json.dumps({"base_model": base_model, **wanted}, indent=2))
        os.replace(tmp, out)
        shutil.rmtree(work)
    return str(out)

