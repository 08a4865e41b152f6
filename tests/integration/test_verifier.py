"""Verifier calls are bounded in time and memory, even on adversarial model output."""

import resource
import time

import pytest

import reward_fns.math as math_reward
from drift_verl.integration.verifier import VerifierFailed, VerifierLoadError, VerifierPool, shared_pool
from tests.conftest import FIXTURES

pytestmark = pytest.mark.timeout(300)

CHAOS = str(FIXTURES / "chaos_functions.py")
TIMEOUT_S = 2.0

# answers a model could give that make math-verify / sympy run for minutes or take gigabytes
ADVERSARIAL = {
    "100 000-digit literal": "1" + "7" * 100_000,
    "power tower": "2^{2^{2^{2^{2^{2^{2}}}}}}",
    "9^9^9": "9^{9^{9}}",
    "deep nesting": "(" * 5000 + "1" + ")" * 5000,
    "huge factorial": "(10^{10})!",
    "nested fractions": "\\frac{1}{" * 400 + "2" + "}" * 400,
    "huge exponent product": "10^{10^{10}} \\cdot 10^{10^{10}}",
    "many terms": "+".join(["x^{99}"] * 20000),
}


def _rss_mb() -> float:
    """This process's resident memory now (not its peak)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.fixture(scope="module", autouse=True)
def _warm_worker():
    """Start the shared pool's workers and load math-verify in them: a call's bound starts after that."""
    math_reward.compute_score("math", "<answer>1</answer>", "1", timeout_s=60)


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_answers_score_zero_within_the_bound(name):
    before, killed = _rss_mb(), shared_pool().replaced
    start = time.monotonic()
    score = math_reward.compute_score("math", f"<answer>{ADVERSARIAL[name]}</answer>", "42", timeout_s=TIMEOUT_S)
    assert score == 0.0
    assert time.monotonic() - start < TIMEOUT_S + 1
    assert shared_pool().replaced == killed + 1  # it ran away and its worker was killed, not answered "wrong"
    assert _rss_mb() - before < 200  # the work happened in a capped worker, not here


def test_a_healthy_call_after_killed_ones_still_works():
    killed = shared_pool().replaced
    assert math_reward.compute_score("math", "<answer>9^{9^{9}}</answer>", "42", timeout_s=TIMEOUT_S) == 0.0
    assert shared_pool().replaced == killed + 1
    assert math_reward.compute_score("math", "<answer>\\frac{1}{2}</answer>", "0.5", timeout_s=TIMEOUT_S) == 1.0


@pytest.fixture
def pool():
    pool = VerifierPool(size=1, memory_mb=512)
    yield pool
    pool.close()


def test_pool_kills_and_replaces_on_timeout_memory_and_crash(pool):
    assert pool.call(CHAOS, "add", (1, 2), {}, 10) == 3
    for name, args, message in (("sleep", (60,), "timed out after 1"), ("allocate_gb", (8,), "memory cap"),
                                ("crash", (), "worker died")):
        start = time.monotonic()
        with pytest.raises(VerifierFailed, match=message):
            pool.call(CHAOS, name, args, {}, 1)
        assert time.monotonic() - start < 2 + 1
        assert pool.call(CHAOS, "add", (2, 3), {}, 10) == 5  # the next call gets a fresh, healthy worker
    assert pool.replaced == 3


def test_a_raising_verifier_keeps_its_worker_and_prints_do_not_confuse_the_pipe(pool):
    with pytest.raises(VerifierFailed, match="RuntimeError: verifier crashed"):
        pool.call(CHAOS, "raises", (), {}, 10)
    assert pool.call(CHAOS, "chatty", (7,), {"extra": 1}, 10) == 8
    assert pool.replaced == 0


def test_a_verifier_that_does_not_load_stops_instead_of_scoring_zero(pool, tmp_path):
    broken = tmp_path / "broken_verifier.py"
    broken.write_text("import a_module_that_does_not_exist\n")
    with pytest.raises(VerifierLoadError, match="broken_verifier.py .* does not load .*ModuleNotFoundError"):
        pool.call(str(broken), "compute_score", ("d", "x", "y"), {}, 10)
    assert pool.call(CHAOS, "add", (1, 1), {}, 10) == 2


def test_a_reply_that_does_not_pickle_is_a_failed_call(pool):
    with pytest.raises(VerifierFailed, match="PicklingError|pickle"):
        pool.call(CHAOS, "unpicklable", (), {}, 10)
    assert pool.call(CHAOS, "add", (2, 2), {}, 10) == 4


def test_pkg_paths_and_async_verifiers(pool):
    assert pool.call("pkg://reward_fns.exact", "compute_score", ("d", "<answer>7</answer>", "7"), {}, 10) == 1.0
    assert pool.call(CHAOS, "async_double", (4,), {}, 10) == 8
