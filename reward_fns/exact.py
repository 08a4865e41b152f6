"""Exact-match verifier with the paper reference code's normalisation (strip whitespace, lower-case).

The answer is the last ``<answer>...</answer>`` of the response (``answer_format`` in ``reward_kwargs`` selects
``boxed`` or ``gsm8k`` instead).
"""

from drift_verl.core.answers import get_parser, normalize


def compute_score(data_source, solution_str, ground_truth, extra_info=None, answer_format="answer", **kwargs):
    answer = get_parser(answer_format)(solution_str)
    if answer is None:
        return 0.0
    return 1.0 if normalize(answer) == normalize(str(ground_truth)) else 0.0
