"""A CPU platform for verl 0.9.1, selected with ``VERL_PLATFORM=cpu`` (the ``platform=cpu`` preset sets it).

verl ships platforms for CUDA/NPU/ROCm only. Every developer and CI machine of this project is CPU-only, so
this module registers a ``cpu`` platform in verl's platform registry (from drift-verl's verl plugin, in every
process) plus the few smallest patches verl needs to run its real FSDP engine with gloo. Nothing is set up on
import: :func:`activate` runs when verl selects the platform (it builds :class:`PlatformCPU`), in each process that
does, so GPU machines and processes that never ask verl for a device stay untouched. Each patch states why it is
needed, the verl version it was written against, and the test that fails if verl changes under it.
"""

from __future__ import annotations

import dataclasses
import os
import types
from contextlib import contextmanager, nullcontext

import torch
from hydra.experimental.callback import Callback
from verl.plugin.platform import PlatformBase, PlatformRegistry, get_platform, set_platform

CPU_PLATFORM = "cpu"


def cpu_platform_selected() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == CPU_PLATFORM


class CpuDeviceId(str):
    """The "current device" on CPU.

    verl passes ``get_device_id()`` both to ``tensor.to(...)`` (where an int 0 would mean ``cuda:0``) and into
    f-strings such as ``f"{device}:{device_id}"``. A ``str`` equal to ``"cpu"`` is read by torch as the CPU
    device, while formatting it yields ``"0"`` so ``"cpu:0"`` stays a valid device string.
    """

    def __new__(cls):
        return super().__new__(cls, "cpu")

    def __format__(self, spec: str) -> str:
        return format(0, spec)

    def __int__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 0


def _zero(*_args, **_kwargs) -> int:
    return 0


def _noop(*_args, **_kwargs) -> None:
    return None


def _mem_get_info(*_args, **_kwargs) -> tuple[int, int]:
    """(free, total) host memory: what verl's memory logging asks of an accelerator."""
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    free = os.sysconf("SC_AVPHYS_PAGES") * page_size
    return free, pages * page_size


def _make_device_module() -> types.ModuleType:
    """A stand-in for ``torch.cuda``: ``torch.cpu`` plus no-ops for the memory/rng/stream calls verl makes."""
    module = types.ModuleType("drift_verl_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("_"):
            setattr(module, name, getattr(torch.cpu, name))
    module.current_device = CpuDeviceId
    module.set_device = _noop
    module.device_count = lambda: 1
    module.is_available = lambda: True
    module.synchronize = _noop
    module.empty_cache = _noop
    module.ipc_collect = _noop
    module.set_per_process_memory_fraction = _noop
    module.reset_peak_memory_stats = _noop
    module.memory_allocated = _zero
    module.memory_reserved = _zero
    module.max_memory_allocated = _zero
    module.max_memory_reserved = _zero
    module.mem_get_info = _mem_get_info
    module.get_device_name = lambda *_a, **_k: "cpu"
    module.get_rng_state = lambda *_a, **_k: torch.get_rng_state()
    module.set_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.stream = lambda *_a, **_k: nullcontext()
    return module


@PlatformRegistry.register(platform=CPU_PLATFORM)
class PlatformCPU(PlatformBase):
    """CPU "accelerator": gloo collectives, Ray's GPU resource used as a slot count (``num_gpus`` fake GPUs)."""

    _device_module = _make_device_module()

    def __init__(self):
        # verl builds its platform once per process (verl.plugin.platform.get_platform / set_platform); it also builds
        # every registered one to probe for hardware, without VERL_PLATFORM set, which must set nothing up
        if cpu_platform_selected():
            activate()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return self._device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return cpu_platform_selected()  # never auto-selected: a GPU user must not land on CPU by accident

    def current_device(self):
        return CpuDeviceId()

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        # VERL_PLATFORM reaches vLLM's engine and worker processes, where drift_verl.platform.vllm_cpu acts on it
        return {"VERL_PLATFORM": CPU_PLATFORM, "VLLM_TARGET_DEVICE": "cpu",
                "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}

    def cudart(self):
        return None


def dedup_backend(backend: str | None) -> str | None:
    """``"cpu:gloo,cpu:gloo"`` -> ``"cpu:gloo"``: torch rejects a device type listed twice."""
    if not backend:
        return backend
    return ",".join(dict.fromkeys(part.strip() for part in backend.split(",")))


def _dedup_process_group_backend() -> None:
    """verl 0.9.1 (``verl/utils/distributed.py``) builds ``cpu:gloo,{device}:{backend}``, i.e. ``cpu:gloo,cpu:gloo``
    here, and has no setting for it: de-duplicate in torch's ``init_process_group``.
    ``tests/platform/test_cpu.py::test_activated_patches_in_a_fresh_process`` runs verl's own call."""
    import torch.distributed as dist

    original = dist.init_process_group

    def init_process_group(*args, backend=None, **kwargs):
        return original(*args, backend=dedup_backend(backend), **kwargs)

    dist.init_process_group = init_process_group


def _unpin_fsdp2_offload() -> None:
    """verl 0.9.1's FSDP engine (``verl/workers/engine/fsdp/transformer_impl.py``) builds the reference model's
    ``CPUOffloadPolicy(pin_memory=True)`` with no setting for it, and pinning needs an accelerator: its policy class
    becomes one that never pins. The platform may be selected while that module is being imported (its module-level
    ``get_device_name()``), after it bound the policy class: ``import_module`` returns the module as it is then.
    ``tests/platform/test_cpu.py`` checks both orders."""
    from importlib import import_module

    transformer_impl = import_module("verl.workers.engine.fsdp.transformer_impl")
    policy = transformer_impl.CPUOffloadPolicy
    if policy is None:  # a torch without FSDP2
        return

    @dataclasses.dataclass
    class UnpinnedCPUOffloadPolicy(policy):
        def __post_init__(self):
            self.pin_memory = False

    transformer_impl.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy


_activated = False


def activate() -> None:
    """The cpu platform's set-up, once per process, when verl selects the platform.

    - ``VERL_ENGINE_DEVICE=cuda``: verl's own override of its engine lookup (``EngineRegistry.get_engine_cls``).
      verl registers its FSDP engines for cuda and npu only; they run on whatever device the platform names.
    - vLLM's CPU settings, for vLLM started from this process (its own processes get them from the platform's
      :meth:`PlatformCPU.rollout_env_vars`).
    - the two patches above, where verl 0.9.1 has no setting.
    """
    global _activated
    if _activated:
        return
    _activated = True
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    _dedup_process_group_backend()
    _unpin_fsdp2_offload()


def select() -> None:
    """Make ``cpu`` this process's verl platform, and (through ``VERL_PLATFORM``) that of the Ray cluster it starts.

    ``python -m verl.trainer.main_ppo`` resolves verl's platform while importing (``verl/trainer/constants_ppo.py``
    asks for the device's compute capability), before Hydra has read ``platform=cpu``: verl then holds its fallback,
    ``nvidia``, which :func:`verl.plugin.platform.set_platform` replaces (verl logs that it does)."""
    os.environ["VERL_PLATFORM"] = CPU_PLATFORM
    if get_platform().device_name != CPU_PLATFORM:
        set_platform(PlatformCPU())


class SelectCpuPlatform(Callback):
    """``hydra.callbacks`` entry of the ``platform=cpu`` preset (``recipes/platform/cpu.yaml``): selects the platform
    as a Hydra job starts, before the entry point's body runs; so ``python -m verl.trainer.main_ppo +platform=cpu``,
    ``python -m drift_verl.main platform=cpu`` and ``python -m drift_verl.eval platform=cpu`` all run on it."""

    def on_job_start(self, config, **kwargs) -> None:
        select()
