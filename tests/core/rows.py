"""Trajectory-store rows for the store tests."""


def store_row(prompt_id, sample, rewards, answers):
    return {
        "prompt_id": prompt_id, "sample": sample, "data_source": "d", "ground_truth": "7",
        "prompt_ids": [1, 2], "response_ids": [3, 4], "response_mask": [1, 1], "turn_spans": [[0, 2]],
        "turn_rewards": rewards, "answers": answers, "format_penalty": -0.1 * answers.count(None),
        "t_star": next((i + 1 for i, r in enumerate(rewards) if r == 1), 0), "verifier_failures": 0,
        "messages": "[]",
    }
