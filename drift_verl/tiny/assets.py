"""Locally built assets for tests and the embedded default: a tiny Qwen2 model, its BPE tokenizer, a tiny task.

These machines reach no model or dataset hub, so everything is made here, deterministically, and cached under
``$DRIFT_VERL_CACHE`` (default ``~/.cache/drift_verl``). Configs refer to them as ``${drift_asset:NAME}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from drift_verl.core.safe_io import cache_dir, locked
from drift_verl.tiny import task as tiny_task
from drift_verl.tiny.reference import INFORMED, WORKED, build_reference

ASSET_VERSION = "v6"  # v6: operands 0..11, train/dev/test splits, the reference trained on training problems only
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def cache_root() -> Path:
    return cache_dir() / ASSET_VERSION


def build_tokenizer(out: Path, vocab_size: int = 512):
    """A byte-level BPE trained on the task's own text, with a Qwen-style chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(tiny_task.tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    # whole numbers and the answer tags as single tokens: a digit-by-digit sum is far harder for a tiny model
    fast.add_tokens(["<answer>", "</answer>", *(str(n) for n in range(tiny_task.MAX_SUM + 9))])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


HEAD_DIM = 32


def build_model(out: Path, vocab_size: int, hidden: int = 128, layers: int = 2, seed: int = 0) -> None:
    """A randomly initialised Qwen2 causal LM. Heads of 32 (the smallest head_dim vLLM's CPU attention accepts):
    two learned two-number sums where one head of 64 did not; three-number sums need four (hidden 128)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=hidden // HEAD_DIM,
        num_key_value_heads=hidden // HEAD_DIM,
        head_dim=HEAD_DIM,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)


def random_model(final: Path, hidden: int = 128, layers: int = 2) -> str:
    """A randomly initialised model with the task's tokenizer at ``final``; built once, atomically."""
    with locked(final):
        if not (final / "config.json").exists():
            tmp = final.with_name(final.name + ".tmp")
            tmp.mkdir(parents=True, exist_ok=True)
            tokenizer = build_tokenizer(tmp)
            build_model(tmp, vocab_size=len(tokenizer), hidden=hidden, layers=layers)
            os.replace(tmp, final)
    return str(final)


def tiny_model() -> str:
    """Path of the tiny model (tokenizer included); built once."""
    return random_model(asset_path("tiny_model"))


def _task_file(split: str, rows) -> str:
    import pandas as pd

    final = asset_path(f"tiny_{split}")
    with locked(final):
        if not final.exists():
            tmp = final.with_suffix(".tmp.parquet")
            pd.DataFrame(rows()).to_parquet(tmp)
            os.replace(tmp, final)
    return str(final)


def _split_file(split: str) -> str:
    """The split's problems as verl's RL parquet (task=tiny uses a seeded subset of training: data.train_max_samples)."""
    return _task_file(split, lambda: tiny_task.task_rows(tiny_task.splits()[split], split))


def tiny_train() -> str:
    return _split_file("train")


def tiny_dev() -> str:
    return _split_file("dev")


def tiny_test() -> str:
    return _split_file("test")


def tiny_reference() -> str:
    return build_reference(asset_path("tiny_reference"), tiny_model())


def tiny_reference_informative() -> str:
    """The reference fine-tuned to use ``higher_lower``'s feedback (``task=tiny_informative``); built once from the
    cached reference (600 verl SFT steps, ~5 min on 2 cores)."""
    return build_reference(asset_path("tiny_reference_informative"), tiny_reference(), INFORMED["num_demos"],
                           INFORMED["sft"], tiny_task.InformedDemonstrator(), INFORMED["seed"])


def tiny_reference_worked() -> str:
    """The reference fine-tuned to show its working before the tagged answer (``task=tiny_long``: rollouts long
    against updates); built once from the cached reference (600 verl SFT steps)."""
    return build_reference(asset_path("tiny_reference_worked"), tiny_reference(), WORKED["num_demos"],
                           WORKED["sft"], tiny_task.WorkedDemonstrator(), WORKED["seed"])


ASSETS = {"tiny_model": tiny_model, "tiny_train": tiny_train, "tiny_dev": tiny_dev, "tiny_test": tiny_test,
          "tiny_reference": tiny_reference, "tiny_reference_informative": tiny_reference_informative,
          "tiny_reference_worked": tiny_reference_worked}
SPLITS = ("tiny_train", "tiny_dev", "tiny_test")


def asset_path(name: str) -> Path:
    if name not in ASSETS:
        raise ValueError(f"unknown drift asset {name!r}; known: {sorted(ASSETS)}")
    if name in SPLITS:
        return cache_root() / "tiny_task" / f"{name.removeprefix('tiny_')}.parquet"
    return cache_root() / name


def resolve(name: str) -> str:
    """OmegaConf resolver ``${drift_asset:NAME}``: the asset's path, built on first use (Ray workers may resolve
    it at once: builders are serialised by a file lock)."""
    return ASSETS[name]()


if __name__ == "__main__":
    print(json.dumps({name: build() for name, build in ASSETS.items()}, indent=2))
