"""Trajectory-store rows for the store tests, and the return written out plainly as their oracle."""


def store_row(prompt_id, sample, rewards, answers):
    return {
        "prompt_id": prompt_id, "sample": sample, "data_source": "d", "ground_truth": "7",
        "prompt_ids": [1, 2], "response_ids": [3, 4], "response_mask": [1, 1], "turn_spans": [[0, 2]],
        "turn_rewards": rewards, "answers": answers, "format_penalty": -0.1 * answers.count(None),
        "t_star": next((i + 1 for i, r in enumerate(rewards) if r == 1), 0), "verifier_failures": 0,
        "messages": "[]",
    }


def paper_return(turn_rewards, format_penalty, answers, gamma, repetition_coef, partial_credit=0.0):
    """The paper's return, term by term and independent of drift_verl.core.weights: the oracle it is tested
    against. ``answers``: per turn or only those given; None (no parseable answer) is skipped. A graded verifier's
    near-misses (0 < r < 1) are not discounted rewards: a never-solved trajectory gets ``partial_credit`` times its
    best one, once."""
    given = [a for a in answers if a is not None]
    discounted = sum(r * gamma**t for t, r in enumerate(turn_rewards) if not 0 < r < 1)
    near = [r for r in turn_rewards if 0 < r < 1]
    credit = partial_credit * max(near) if near and not any(r >= 1 for r in turn_rewards) else 0.0
    repetition = repetition_coef * (1 - len(set(given)) / len(given)) if given else 0.0
    return discounted + credit + format_penalty - repetition
