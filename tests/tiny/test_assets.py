"""The locally built tiny model, tokenizer and task."""

import json
from pathlib import Path

from transformers import AutoTokenizer

from drift_verl.tiny import assets


def test_tiny_model_is_vllm_cpu_compatible(tiny_model_path):
    config = json.loads((Path(tiny_model_path) / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["head_dim"] == 32  # vLLM's CPU attention rejects e.g. 16
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    assert config["vocab_size"] == len(tokenizer)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 4?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer("<answer>7</answer>")["input_ids"]
    assert tokenizer.decode(ids) == "<answer>7</answer>"


def test_composing_a_paper_task_builds_nothing(tmp_path, monkeypatch):
    """Only the assets the final config refers to are built, when it is read: a paper task refers to none, so it
    never builds the reference policy (minutes)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    import drift_verl.integration.job.plugin  # noqa: F401  (registers the resolver)

    monkeypatch.setenv("DRIFT_VERL_CACHE", str(tmp_path))
    built = []
    monkeypatch.setattr(assets, "ASSETS", {name: (lambda n=name: built.append(n) or n) for name in assets.ASSETS})
    with initialize_config_module(config_module="recipes", version_base=None):
        preset = compose(config_name="drift_main", overrides=["recipe=drift", "task=qwen2.5-3b_metamath"])
        default = compose(config_name="drift_main", overrides=["recipe=drift"])
    assert built == []
    OmegaConf.to_container(preset, resolve=True)
    assert built == []  # the paper task's model and data are no tiny asset
    assert default.actor_rollout_ref.model.path == "tiny_reference"
    OmegaConf.to_container(default, resolve=True)
    assert sorted(set(built)) == ["tiny_dev", "tiny_reference", "tiny_train"]  # the main job validates on dev
