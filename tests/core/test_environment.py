"""The environment contract (drift_verl/core/environment.py): the built-in environments, loading a user's class,
and what counts as a broken contract. The loop's side (bounded calls, a broken trajectory kept):
tests/integration/test_feedback_loop.py."""

import pytest

from drift_verl.core.config import ConfigError, EnvConfig
from drift_verl.core.environment import EnvError, HigherLower, TryAgain, checked_message, environment_class

ROW = {"ground_truth": "42", "data_source": "tiny", "extra_info": {}}


def test_try_again_says_the_same_message_or_a_state_block():
    simple = TryAgain(EnvConfig())
    assert simple.reset(ROW) is None
    assert simple.step("<answer>3</answer>", "3", 0.0, 1) == "Incorrect. Please think again."
    full = TryAgain(EnvConfig(prompt_mode="full"))
    said = full.step("<answer>3</answer>", "3", 0.0, 2)
    assert said.startswith("Turn 2 / 5") and "Actions left: 3" in said and "'3' is incorrect" in said
    assert "no parseable answer" in full.step("no tag", None, 0.0, 1)
    with pytest.raises(ConfigError, match="prompt_mode"):
        EnvConfig(prompt_mode="verbose")


def test_higher_lower_says_which_way_the_answer_is_off():
    env = HigherLower(EnvConfig(name="higher_lower"))
    assert env.reset(ROW) is None
    assert env.step("", "50", 0.0, 1) == HigherLower.DEFAULTS["high"]
    assert env.step("", "41.5", 0.0, 2) == HigherLower.DEFAULTS["low"]
    assert env.step("", None, 0.0, 3) == env.step("", "forty", 0.0, 3) == HigherLower.DEFAULTS["unparsed"]
    custom = HigherLower(EnvConfig(name="higher_lower", options={"high": "Too high."}))
    custom.reset(ROW)
    assert custom.step("", "43", 0.0, 1) == "Too high."
    with pytest.raises(EnvError, match="unknown key 'hihg'"):
        HigherLower(EnvConfig(options={"hihg": "x"}))


class Echo:
    """A user's environment, loaded by its path."""

    def __init__(self, config):
        self.options = config.options

    def reset(self, row):
        return f"Hint: {row['ground_truth'][0]}..."

    def step(self, text, answer, reward, turn):
        return None if turn >= self.options.get("turns", 2) else f"Not {answer}."


def test_a_users_class_is_named_by_its_path():
    assert environment_class("try_again") is TryAgain and environment_class("higher_lower") is HigherLower
    assert environment_class(f"pkg://{__name__}:Echo") is Echo and environment_class(f"{__name__}:Echo") is Echo
    for name, match in (("nowhere", "expected one of"), ("pkg://no_such_module:Env", "cannot load it"),
                        (f"{__name__}:Missing", "cannot load it"), (f"{__name__}:ROW", "no reset")):
        with pytest.raises(EnvError, match=match):
            environment_class(name)


def test_only_a_string_or_none_keeps_the_contract():
    assert checked_message("Too high.") == "Too high." and checked_message(None) is None
    for garbage in (3, ("Too high.", 0.5), b"bytes", ["a"]):
        with pytest.raises(EnvError, match="not a string or None"):
            checked_message(garbage)
    with pytest.raises(ConfigError, match="env.env_timeout_s"):
        EnvConfig(env_timeout_s=0)
