"""The embedded default task: data generator, demonstrations, verifier, and the warm-started reference policy."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from drift_verl.tiny import assets
from drift_verl.tiny import task as tiny_task
from drift_verl.core.answers import extract_answer_tag
from reward_fns.exact import compute_score


def test_train_dev_test_are_disjoint_deterministic_and_new():
    splits = tiny_task.splits()
    assert splits == tiny_task.splits()
    train, dev, test = (set(splits[k]) for k in ("train", "dev", "test"))
    assert (len(dev), len(test)) == (len(splits["dev"]), len(splits["test"])) == (256, 256)
    assert len(train) == len(splits["train"]) == 1728 - 512
    assert not train & dev and not train & test and not dev & test
    earlier = set(tiny_task.earlier_validation_problems())  # what settings were tuned on before
    assert len(earlier) == 128 and not earlier & (dev | test)
    questions = {tiny_task.question(p) for split in splits.values() for p in split}
    assert len(questions) == 1728  # distinct prompts, not rephrasings of the same problem
    assert all(tiny_task.operands(tiny_task.question(p)) == p for p in dev | test)
    for held_out in (dev, test):  # both span easy and hard sums
        sums = [sum(p) for p in held_out]
        assert min(sums) <= 5 and max(sums) >= 28


def test_demonstrations_use_training_problems_only():
    train = set(tiny_task.splits()["train"])
    rows = tiny_task.demonstration_rows(3000, seed=3)
    shown = {tiny_task.operands(row["messages"][1]["content"]) for row in rows}
    assert shown <= train and len(shown) > 0.9 * len(train)


def test_parquet_files_are_in_verl_schema_and_verified_by_the_reward_fn():
    for path, split, size in ((assets.tiny_train(), "train", 1216), (assets.tiny_dev(), "dev", 256),
                              (assets.tiny_test(), "test", 256)):
        frame = pd.read_parquet(path)
        assert len(frame) == size and frame["extra_info"].map(lambda e: e["split"]).eq(split).all()
        for row in frame.itertuples():
            answer = sum(tiny_task.operands(row.prompt[-1]["content"]))
            truth = row.reward_model["ground_truth"]
            assert truth == str(answer)
            assert compute_score(row.data_source, f"so <answer>{answer}</answer>", truth) == 1.0
            assert compute_score(row.data_source, f"<answer>{answer + 1}</answer>", truth) == 0.0
            assert compute_score(row.data_source, str(answer), truth) == 0.0  # no tags: no parseable answer


def test_every_answer_and_near_miss_is_one_token():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(assets.tiny_model())
    for value in range(tiny_task.MAX_SUM + 4):
        assert len(tokenizer.encode(f"<answer>{value}</answer>", add_special_tokens=False)) == 3


def test_demonstrations_are_noisy_multi_turn_and_end_at_the_first_correct_answer():
    rows = tiny_task.demonstration_rows(2000, seed=5)
    assert rows == tiny_task.demonstration_rows(2000, seed=5)
    first_right, repeats, retries = 0, 0, 0
    for row in rows:
        messages = row["messages"]
        answer = str(sum(tiny_task.operands(messages[1]["content"])))
        turns = [m["content"] for m in messages if m["role"] == "assistant"]
        answers = [extract_answer_tag(t) for t in turns]
        assert all(m["content"] == tiny_task.FEEDBACK for m in messages[3::2])  # feedback between answers
        assert messages[-1]["role"] == "assistant"
        assert all(given != answer for given in answers[:-1])  # stops at the first correct answer
        first_right += answers[0] == answer
        for t in range(1, len(answers)):
            retries += 1
            repeats += answers[t] is not None and answers[t] in answers[:t]
    demonstrator = tiny_task.Demonstrator()
    assert abs(first_right / len(rows) - demonstrator.first_correct * (1 - demonstrator.untagged)) < 0.04
    assert 0.15 < repeats / retries < 0.45  # room for DRIFT's repetition penalty


def test_the_references_demonstrations_are_pinned():
    """The cached reference is rebuilt byte for byte on every fresh machine, and every store's fingerprint holds its
    bytes: the noisy demonstrator must keep drawing the same conversations (the informed one subclasses it)."""
    from drift_verl.tiny.reference import DEMO_SEED, NUM_DEMOS

    rows = tiny_task.demonstration_rows(NUM_DEMOS, DEMO_SEED)
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    assert digest == "679b18f9f43573e3bfd901fd83887f5368b6ba04a0837b8ddf9ed80f55adee0c"


def test_informed_demonstrations_are_what_higher_lower_says_and_use_it():
    """Every feedback message in the informed demonstrations is what the real ``higher_lower`` environment says to
    that answer, and every wrong retry lies inside the bounds the feedback so far gives; the first turn is the noisy
    demonstrator's (a fine-tune on it keeps the reference's first-turn skill)."""
    from drift_verl.core.config import EnvConfig
    from drift_verl.core.environment import HigherLower

    demonstrator = tiny_task.InformedDemonstrator()
    rows = tiny_task.demonstration_rows(3000, seed=4, demonstrator=demonstrator)
    first_right = retries = inside = repeats = 0
    for row in rows:
        messages = row["messages"]
        truth = sum(tiny_task.operands(messages[1]["content"]))
        env = HigherLower(EnvConfig(name="higher_lower"))
        env.reset({"ground_truth": str(truth)})
        low, high = -1, float("inf")
        first_right += extract_answer_tag(messages[2]["content"]) == str(truth)
        for turn, (reply, heard) in enumerate(zip(messages[2::2], messages[3::2]), 1):
            answer = extract_answer_tag(reply["content"])
            assert heard["content"] == env.step(reply["content"], answer, float(answer == str(truth)), turn)
            value = int(reply["content"].removeprefix("<answer>").removesuffix("</answer>"))
            following = messages[2 + 2 * turn]["content"]
            retried = int(following.removeprefix("<answer>").removesuffix("</answer>"))
            if answer is not None:
                high, low = (min(high, value), low) if value > truth else (high, max(low, value))
            retries += 1
            repeats += retried == value
            inside += low < retried < high
    assert abs(first_right / len(rows) - demonstrator.first_correct * (1 - demonstrator.untagged)) < 0.04
    assert inside / retries > 0.85 and repeats / retries < 0.15  # it follows the feedback, seldom repeats


def test_worked_demonstrations_show_working_that_adds_up_to_the_answer_given(tiny_model_path):
    """The rollout-heavy reference's demonstrations (task=tiny_long): the noisy demonstrator's answers, turn for
    turn, each preceded by partial sums that end at it and by the same sum checked in reverse order (one slip in
    each where it is wrong, never a negative number), in under the task's 48 tokens a turn."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    plain = tiny_task.demonstration_rows(500, seed=5)
    worked = tiny_task.demonstration_rows(500, seed=5, demonstrator=tiny_task.WorkedDemonstrator())
    lengths = []
    for noisy, shown in zip(plain, worked):
        assert [m["role"] for m in noisy["messages"]] == [m["role"] for m in shown["messages"]]
        problem = tiny_task.operands(shown["messages"][1]["content"])
        for said, reply in zip(noisy["messages"][2::2], shown["messages"][2::2]):
            answer = extract_answer_tag(said["content"]) or said["content"]  # the number the noisy one gave
            working = reply["content"].partition(" <answer>")[0]
            assert extract_answer_tag(reply["content"]) == extract_answer_tag(said["content"])
            passes = working.rstrip(".").split("; ")
            assert len(passes) == 2
            for order, done in zip((problem, problem[::-1]), passes):
                steps = [step.split(" = ") for step in done.split(", ")]
                assert [int(left.split(" + ")[1]) for left, _ in steps] == list(order[1:])
                assert int(steps[0][0].split(" + ")[0]) == order[0] and int(steps[-1][1]) == int(answer)
                for (left, right), (nxt, _) in zip(steps, steps[1:]):
                    assert int(nxt.split(" + ")[0]) == int(right) >= 0  # each partial sum carried on
                slips = sum(sum(map(int, left.split(" + "))) != int(right) for left, right in steps)
                assert slips == (int(answer) != sum(problem))
            lengths.append(len(tokenizer(reply["content"])["input_ids"]))
    assert max(lengths) < 48 and sum(lengths) / len(lengths) > 40
    one_pass = tiny_task.WorkedDemonstrator(passes=1).say((3, 5, 4), 12, tagged=True)
    assert one_pass == "3 + 5 = 8, 8 + 4 = 12. <answer>12</answer>"  # the partial sums alone
    # a slip that would take a pass's first partial sum below 0 (0 + 1 - 3) falls on its last step instead
    assert tiny_task.WorkedDemonstrator().say((0, 1, 10), 8, tagged=True) == (
        "0 + 1 = 1, 1 + 10 = 8; 10 + 1 = 8, 8 + 0 = 8. <answer>8</answer>")


def test_a_cached_reference_built_from_another_recipe_is_rebuilt(tmp_path):
    """A cached reference is used only for the recipe it was built from (its drift_reference.json): a change of
    demonstrator, of its settings, of the SFT settings, of the seed or of the base model's own recipe makes
    build_reference build it again. A record written before a key (or the demonstrator's class) was recorded is
    judged by what it holds."""
    from drift_verl.tiny.reference import RECORD, changed_recipe, recipe

    base = tmp_path / "base"
    base.mkdir()
    worked = recipe(str(base), 8, {"optim.lr": 2e-3}, tiny_task.WorkedDemonstrator(), seed=5)
    assert worked["base"] is None  # an untrained base model has no recipe
    (tmp_path / RECORD).write_text(json.dumps({"base_model": "/elsewhere", **worked}))
    assert changed_recipe(tmp_path, worked) == []  # the base model's path differs by machine: not compared
    assert changed_recipe(tmp_path, {**worked, "sft": {"optim.lr": 1e-3}}) == ["sft"]
    assert changed_recipe(tmp_path, {**worked, "seed": 6}) == ["seed"]
    one_pass = recipe(str(base), 8, {"optim.lr": 2e-3}, tiny_task.WorkedDemonstrator(passes=1), seed=5)
    assert changed_recipe(tmp_path, one_pass) == ["demonstrator"]
    (base / RECORD).write_text(json.dumps({"base_model": "/x", "num_demos": 3}))  # the base was built another way
    assert changed_recipe(tmp_path, recipe(str(base), 8, {"optim.lr": 2e-3}, tiny_task.WorkedDemonstrator(), 5)) == [
        "base"]
    (tmp_path / RECORD).write_text("{not json")
    assert changed_recipe(tmp_path, worked)


def test_references_cached_before_recipes_were_recorded_stay_cached(tmp_path):
    """The records of the references built by earlier drift-verl (asset v6: no demonstrator class, seed or base
    recipe), copied literally: the shipped recipes of tiny_reference and tiny_reference_informative match them, so
    those references (and every store fingerprinted from their bytes) are not rebuilt; the worked reference, whose
    turns gained their check, is."""
    from drift_verl.tiny.reference import INFORMED, NUM_DEMOS, RECORD, SFT_SETTINGS, WORKED, changed_recipe, recipe

    sft = {"data.train_batch_size": 64, "data.micro_batch_size_per_gpu": 64, "data.max_length": 144,
           "trainer.total_epochs": 1, "optim.lr": 0.003, "optim.betas": "[0.9,0.95]",
           "optim.lr_warmup_steps_ratio": 0.05, "optim.lr_scheduler_type": "cosine"}
    noisy = {"first_correct": 0.5, "retry_correct": 0.3, "repeat": 0.4, "untagged": 0.05, "max_turns": 4}
    records = {
        "tiny_reference": {"base_model": "/root/.cache/drift_verl/v6/tiny_model", "demonstrator": noisy,
                           "num_demos": 38400, "sft": sft},
        "tiny_reference_informative": {
            "base_model": "/root/.cache/drift_verl/v6/tiny_reference", "num_demos": 38400,
            "demonstrator": {**noisy, "retry_correct": 0.4, "repeat": 0.1, "env": "higher_lower"},
            "sft": {**sft, "data.max_length": 192, "optim.lr": 0.002}},
        "tiny_reference_worked": {"base_model": "/root/.cache/drift_verl/v6/tiny_reference", "demonstrator": noisy,
                                  "num_demos": 38400, "sft": {**sft, "data.max_length": 256, "optim.lr": 0.002}},
    }
    for name, record in records.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / RECORD).write_text(json.dumps(record, indent=2))
    base = str(tmp_path / "tiny_reference")
    assert SFT_SETTINGS == sft
    shipped = {
        "tiny_reference": recipe(str(tmp_path / "tiny_model"), NUM_DEMOS, None, tiny_task.Demonstrator(), 3),
        "tiny_reference_informative": recipe(base, INFORMED["num_demos"], INFORMED["sft"],
                                             tiny_task.InformedDemonstrator(), INFORMED["seed"]),
        "tiny_reference_worked": recipe(base, WORKED["num_demos"], WORKED["sft"], tiny_task.WorkedDemonstrator(),
                                        WORKED["seed"]),
    }
    assert changed_recipe(tmp_path / "tiny_reference", shipped["tiny_reference"]) == []
    assert changed_recipe(tmp_path / "tiny_reference_informative", shipped["tiny_reference_informative"]) == []
    assert changed_recipe(tmp_path / "tiny_reference_worked", shipped["tiny_reference_worked"]) == ["demonstrator",
                                                                                                    "sft"]


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_reference_warm_start_runs_verl_sft_and_exports_a_model(tmp_path, tiny_model_path):
    """verl's SFT trainer (torchrun, cpu platform) on the demonstrations, shortened to a few steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from drift_verl.tiny.reference import build_reference

    out = tmp_path / "reference"
    path = build_reference(out, tiny_model_path, num_demos=256, sft={"trainer.total_epochs": 1})
    meta = json.loads((Path(path) / "drift_reference.json").read_text())
    assert meta["base_model"] == tiny_model_path and meta["num_demos"] == 256
    assert not out.with_name("reference.build").exists()  # the build folder is removed once exported
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert len(tokenizer) == model.config.vocab_size
    changed = [n for n, p in model.named_parameters() if not p.detach().equal(base.get_parameter(n).detach())]
    assert changed  # trained, not copied
    same = build_reference(out, tiny_model_path, num_demos=256, sft={"trainer.total_epochs": 1})
    assert same == path  # cached: a second call does not train again
