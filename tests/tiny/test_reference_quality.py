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


def test_the_informative_reference_uses_higher_lowers_feedback():
    """task=tiny_informative's reference (the reference fine-tuned on InformedDemonstrator's conversations): under
    higher_lower's feedback it solves far more within 5 turns than the reference, which never heard those messages,
    and more than itself under try_again's, which says no direction (2026-12-04, 256 dev problems x 16: 0.755,
    0.452, 0.704; README "Informative feedback"). 8 samples a problem where two of its own scores are compared:
    standard error of their difference about 0.014."""
    dev = tiny_task.splits()["dev"]
    informed = assets.tiny_reference_informative()
    heard = solved_within(informed, dev, samples=8, seed=0, env="higher_lower")
    told_nothing = solved_within(informed, dev, samples=8, seed=0, env="try_again")
    reference = solved_within(assets.tiny_reference(), dev, samples=4, seed=0, env="higher_lower")
    assert 0.18 <= heard[0] <= 0.34, heard
    assert heard[4] >= reference[4] + 0.15, (heard, reference)
    assert heard[4] >= told_nothing[4] + 0.01, (heard, told_nothing)
