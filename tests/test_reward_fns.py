"""Reward functions on real gold answers, their documented equivalent forms, timeouts, and both ways verl loads
them (``pkg://reward_fns.<name>`` and a file path, with ``reward_kwargs``)."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn

import reward_fns.math
from reward_fns import choice, exact, gsm8k
from tests.real_data import REPO, copies, read_jsonl

math_score = reward_fns.math.compute_score


def gsm8k_gold(answer: str) -> str:
    return answer.rpartition("####")[2].strip().replace(",", "")


@pytest.mark.parametrize("path", copies("math500_test.jsonl"))
def test_math_on_math500_gold(path):
    for row in read_jsonl(path):
        gold = row["answer"]
        assert math_score("math500", f"<answer>{gold}</answer>", gold) == 1.0, gold
        assert math_score("math500", row["solution"], gold) == 1.0, gold  # the solution's own \boxed{}
        assert math_score("math500", f"<answer>{gold}+1</answer>", gold) == 0.0, gold
        assert math_score("math500", row["solution"], gold, answer_format="answer") == 0.0  # no <answer> tag


@pytest.mark.parametrize("path", copies("gsm8k_test.jsonl") + copies("gsm8k_train.jsonl"))
def test_gsm8k_and_math_on_gsm8k_gold(path):
    for row in read_jsonl(path):
        gold = gsm8k_gold(row["answer"])
        wrong = str(int(gold) + 1)
        # the raw solution is its own answer format (#### n), and the raw solution works as ground truth
        assert gsm8k.compute_score("gsm8k", row["answer"], row["answer"], answer_format="gsm8k") == 1.0
        assert gsm8k.compute_score("gsm8k", f"<answer>${int(gold):,}</answer>", gold) == 1.0
        assert gsm8k.compute_score("gsm8k", f"<answer>{wrong}</answer>", gold) == 0.0
        assert exact.compute_score("gsm8k", f"<answer> {gold} </answer>", gold) == 1.0


@pytest.mark.parametrize("path", copies("gsm8k_test.jsonl"))
def test_math_on_gsm8k_gold(path):
    """The presets validate on GSM8K test with the math verifier (the first 300 rows keep this quick)."""
    for row in read_jsonl(path)[:300]:
        gold = gsm8k_gold(row["answer"])
        assert math_score("gsm8k", f"<answer>{int(gold):,}</answer>", gold) == 1.0
        assert math_score("gsm8k", f"<answer>{int(gold) + 1}</answer>", gold) == 0.0


MATH_EQUIVALENT = [  # (answer, gold): the forms the README promises
    ("<answer>18</answer>", "18"),
    ("\\boxed{18}", "18"),
    ("<answer>\\boxed{18}</answer>", "18"),
    ("<answer>$18$</answer>", "18"),
    ("<answer>18.0</answer>", "18"),
    ("<answer>70,000</answer>", "70000"),
    ("<answer>\\$18</answer>", "18"),
    ("<answer>18 dollars</answer>", "18"),
    ("<answer>50\\%</answer>", "50"),
    ("<answer>90^\\circ</answer>", "90"),
    ("<answer>0.5</answer>", "\\frac{1}{2}"),
    ("<answer>1/2</answer>", "\\frac{1}{2}"),
    ("<answer>\\dfrac{1}{2}</answer>", "\\frac12"),
    ("<answer>\\(\\sqrt{2}/2\\)</answer>", "\\frac{\\sqrt{2}}{2}"),
    ("<answer>3\\sqrt{2}</answer>", "\\sqrt{18}"),
    ("<answer>(3, \\pi/2)</answer>", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("<answer>x = 5</answer>", "5"),
    ("<answer>\\{1,2\\}</answer>", "\\{2,1\\}"),
    ("<answer>\\text{Monday}</answer>", "\\text{Monday}"),
]
MATH_DIFFERENT = [
    ("<answer>19</answer>", "18"),
    ("<answer>q - p</answer>", "p - q"),
    ("<answer>x=3 or x=18</answer>", "18"),  # hedging is not an answer
    ("The answer is 18.", "18"),  # no answer span
]


@pytest.mark.parametrize(("answer", "gold"), MATH_EQUIVALENT)
def test_math_equivalent_forms(answer, gold):
    assert math_score("math", answer, gold) == 1.0


@pytest.mark.parametrize(("answer", "gold"), MATH_DIFFERENT)
def test_math_different_answers(answer, gold):
    assert math_score("math", answer, gold) == 0.0


def test_answer_format_restricts_the_span():
    assert math_score("m", "\\boxed{7}", "7", answer_format="answer") == 0.0
    assert math_score("m", "<answer>7</answer>", "7", answer_format="boxed") == 0.0
    assert math_score("m", "<answer>3</answer> then <answer>7</answer>", "7") == 1.0  # the last answer counts


@pytest.mark.parametrize(
    ("answer", "gold", "score"),
    [
        ("<answer>$1,234.00 per week</answer>", "#### 1,234", 1.0),
        ("<answer>18 eggs</answer>", "18", 1.0),
        ("<answer>3 x 6 = 18</answer>", "18", 1.0),
        ("<answer>-5</answer>", "-5", 1.0),
        ("<answer>.5</answer>", "0.5", 1.0),
        ("\\boxed{18}", "18", 1.0),
        ("<answer>eighteen</answer>", "18", 0.0),
        ("18", "18", 0.0),  # no answer span
    ],
)
def test_gsm8k_forms(answer, gold, score):
    assert gsm8k.compute_score("gsm8k", answer, gold) == score


def test_gsm8k_rejects_a_gold_without_a_number():
    with pytest.raises(ValueError, match="ground truth 'n/a'"):
        gsm8k.compute_score("gsm8k", "<answer>1</answer>", "n/a")


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("<answer>B</answer>", 1.0),
        ("<answer>(b)</answer>", 1.0),
        ("<answer>B) 42</answer>", 1.0),
        ("<answer>The answer is (B).</answer>", 1.0),
        ("<answer>\\text{(B)}</answer>", 1.0),
        ("\\boxed{B}", 1.0),
        ("<answer>C</answer>", 0.0),
        ("<answer>A bus</answer>", 0.0),
        ("B", 0.0),
    ],
)
def test_choice(answer, score):
    assert choice.compute_score("mmlu", answer, "(B)") == score


def test_exact_is_the_reference_normalisation():
    assert exact.compute_score("x", "<answer>  Paris </answer>", "paris") == 1.0
    assert exact.compute_score("x", "<answer>1/2</answer>", "0.5") == 0.0  # no math equivalence
    assert exact.compute_score("x", "#### 12", "12", answer_format="gsm8k") == 1.0


def test_a_hanging_verifier_scores_zero_within_the_timeout():
    """As verl's reward loop calls it (not in the main thread), on an answer that would keep sympy busy for
    minutes: bounded by drift_verl.integration.verifier's worker process."""
    start = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        score = pool.submit(math_score, "m", "<answer>9^{9^{9}}</answer>", "12345", timeout_s=0.5).result(10)
    assert score == 0.0
    assert time.monotonic() - start < 3


def test_math_verify_works_outside_the_main_thread():
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(math_score, "m", "<answer>\\frac{2}{4}</answer>", "0.5").result(30) == 1.0


@pytest.mark.parametrize("name", ["math", "gsm8k", "choice", "exact"])
@pytest.mark.parametrize("style", ["pkg", "file"])
def test_loaded_the_ways_verl_loads_them(name, style):
    path = f"pkg://reward_fns.{name}" if style == "pkg" else str(REPO / "reward_fns" / f"{name}.py")
    config = OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": path, "name": "compute_score",
                                               "reward_kwargs": {"answer_format": "answer"}}}}
    )
    score = get_custom_reward_fn(config)
    gold = "C" if name == "choice" else "12"
    assert score("src", f"<answer>{gold}</answer>", gold, {"index": 0}) == 1.0
    assert score("src", f"\\boxed{{{gold}}}", gold, {"index": 0}) == 0.0  # reward_kwargs reached the function


def test_readme_worked_example(tmp_path):
    """The README's custom reward function, loaded by file path as its override does."""
    readme = (REPO / "README.md").read_text()
    code = readme.split("`my_rewards/yes_no.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "yes_no.py").write_text(code)
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": str(tmp_path / "yes_no.py"), "name": "compute_score", "reward_kwargs": {"answer_format": "answer"}}}})
    score = get_custom_reward_fn(config)
    assert score("yes_no", "91 = 7 x 13. <answer> No. </answer>", "no") == 1.0
    assert score("yes_no", "<answer>yes</answer>", "no") == 0.0
    assert score("yes_no", "no", "no") == 0.0


def test_distance_gives_partial_credit_below_one_and_one_only_when_exact():
    from reward_fns import distance

    assert distance.compute_score("d", "<answer>42</answer>", "42") == 1.0
    assert distance.compute_score("d", "<answer>42.0</answer>", "42") == 1.0
    assert distance.compute_score("d", "<answer>40</answer>", "42") == pytest.approx(1 - 2 / 42)
    assert 0 < distance.compute_score("d", "<answer>41.999</answer>", "42") < 1
    assert distance.compute_score("d", "<answer>100</answer>", "42") == 0.0  # too far: floored at 0
    assert distance.compute_score("d", "<answer>1</answer>", "0") == 0.0  # |truth| < 1: distance over 1
    assert distance.compute_score("d", "<answer>nan</answer>", "42") == 0.0
    assert distance.compute_score("d", "<answer>forty</answer>", "42") == distance.compute_score("d", "42", "42") == 0.0
    assert distance.compute_score("d", r"\boxed{41}", "42", answer_format="boxed") == pytest.approx(1 - 1 / 42)
