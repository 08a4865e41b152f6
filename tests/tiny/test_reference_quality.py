"""The embedded reference policy leaves DRIFT room to learn, on problems it never saw (the dev split).

Its demonstrations come from training problems only; a reference built 2026-12-03 measured 0.206 at turn 1 and
0.620 within 5 turns on dev (256 problems x 16 samples, HF sampling at temperature 1, README "The embedded
task"). Here 4 samples a problem (1024 conversations, standard error about 0.013 at turn 1)."""

from drift_verl.tiny import assets
from drift_verl.tiny import task as tiny_task
from drift_verl.tiny.quality import solved_within


def test_reference_solves_a_fifth_at_turn_one_and_most_within_five_on_dev():
    scores = solved_within(assets.tiny_reference(), tiny_task.splits()["dev"], samples=4, seed=0)
    assert 0.14 <= scores[0] <= 0.28, scores
    assert 0.52 <= scores[4] <= 0.72, scores
    assert all(a <= b for a, b in zip(scores, scores[1:]))  # feedback turns add solved conversations
