"""The locally built tiny model, tokenizer and task."""

import json
from pathlib import Path

from transformers import AutoTokenizer

from drift_verl import assets


def test_tiny_model_is_vllm_cpu_compatible(tiny_model_path):
    config = json.loads((Path(tiny_model_path) / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["head_dim"] == 64  # vLLM's CPU attention rejects e.g. 16
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    assert config["vocab_size"] == len(tokenizer)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 4?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer("<answer>7</answer>")["input_ids"]
    assert tokenizer.decode(ids) == "<answer>7</answer>"
