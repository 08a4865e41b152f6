"""The locally built tiny model, tokenizer and task."""

import json
from pathlib import Path

from transformers import AutoTokenizer

from drift_verl import assets


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


def test_the_resolver_names_assets_and_only_those_the_final_config_uses_are_built(tmp_path, monkeypatch):
    """OmegaConf resolves the task's model path while Hydra merges a preset over it: that must not build the
    reference policy (minutes); build_used builds what the final config refers to."""
    from hydra import compose, initialize_config_module

    import drift_verl.plugin  # noqa: F401  (registers the resolver)

    monkeypatch.setenv("DRIFT_VERL_CACHE", str(tmp_path))
    built = []
    monkeypatch.setattr(assets, "ASSETS", {name: (lambda n=name: built.append(n)) for name in assets.ASSETS})
    with initialize_config_module(config_module="drift_verl.recipes", version_base=None):
        preset = compose(config_name="drift_main", overrides=["recipe=drift", "preset=qwen2.5-3b_metamath"])
        default = compose(config_name="drift_main", overrides=["recipe=drift"])
    assert built == []  # composing built nothing
    assets.build_used(preset)
    assert built == []  # the preset's model and data replace every tiny asset
    assets.build_used(default)
    assert sorted(built) == ["tiny_reference", "tiny_train", "tiny_val"]
    assert default.actor_rollout_ref.model.path == str(tmp_path / assets.ASSET_VERSION / "tiny_reference")
    assert not any(tmp_path.iterdir())
