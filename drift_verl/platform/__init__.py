"""Platforms verl lacks. ``cpu``: verl's processes (:mod:`.cpu`) and vLLM's own processes (:mod:`.vllm_cpu`)."""
