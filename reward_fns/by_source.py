"""One verifier per data source: a benchmark mix (math and multiple choice, say) scored by the right function.

``reward_kwargs``: ``routes`` maps a data source to a reward function's path (``pkg://reward_fns.choice`` or a
file), ``default`` is the path for every other source. Each function is called with the remaining
``reward_kwargs`` (``answer_format``, ...) and must have ``compute_score``. ``drift_verl.eval.evaluate`` sets this up from
``eval.rewards``; in a training config::

    reward.custom_reward_function.path=pkg://reward_fns.by_source
    ++reward.custom_reward_function.reward_kwargs.default=pkg://reward_fns.math
    ++reward.custom_reward_function.reward_kwargs.routes.my_mcq=pkg://reward_fns.choice
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _load(path: str):
    """The routed function, loaded as verl loads a ``custom_reward_function`` but without importing verl: in a
    verifier worker, verl's loader would import torch and Ray (seconds, and more memory than the worker's cap
    leaves) inside the first call's deadline, so every call would time out and score 0."""
    from drift_verl.integration.verifier import load_function

    return load_function(path, "compute_score")


def route(data_source: str, routes=None, default: str | None = None) -> str:
    """The reward function path for ``data_source``."""
    path = (routes or {}).get(str(data_source), default)
    if not path:
        raise ValueError(f"by_source reward: no route for data source {data_source!r} and no default")
    return str(path)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, routes=None, default=None, **kwargs):
    fn = _load(route(data_source, routes, default))
    return fn(data_source, solution_str, ground_truth, extra_info, **kwargs)
