"""The dataset converters on the real GSM8K / MATH500 files (and a MetaMathQA-format sample): verl's schema, the
paper's prompt, gold answers the verifiers accept, and bad rows reported by id. Nothing is downloaded."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf

import reward_fns.gsm8k
import reward_fns.math
from drift_verl import data_prep
from drift_verl.data_prep import INSTRUCTION, main, prepare
from tests.conftest import FIXTURES
from tests.real_data import REPO, SAMPLES, copies, read_jsonl


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """A test that reached for the hub would download: fail it instead (local files, as verl reads them, pass)."""
    import datasets

    local = datasets.load_dataset

    def refuse(path, *args, **kwargs):
        if path in ("parquet", "json"):
            return local(path, *args, **kwargs)
        raise AssertionError(f"load_dataset({path!r}) called in a test")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def converted(dataset, source, tmp_path, **kwargs) -> tuple[data_prep.Report, list[dict]]:
    out = tmp_path / f"{dataset}.parquet"
    report = prepare(dataset, str(source), str(out), **kwargs)
    return report, pd.read_parquet(out).to_dict("records") if out.exists() else []


def check_rows(rows: list[dict], dataset: str, split: str, source_rows: list[dict], question_key: str):
    """verl's schema, the paper's prompt and unique ids."""
    assert len({row["extra_info"]["prompt_id"] for row in rows}) == len(rows)
    for index, (row, source) in enumerate(zip(rows, source_rows)):
        assert row["data_source"] == dataset
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert row["prompt"][0]["content"] == INSTRUCTION
        assert row["prompt"][1]["content"] == source[question_key].strip()
        assert row["extra_info"]["prompt_id"] == f"{dataset}-{split}-{index}"
        assert row["extra_info"]["index"] == index and row["extra_info"]["split"] == split


@pytest.mark.parametrize("path", copies("gsm8k_train.jsonl") + copies("gsm8k_test.jsonl"))
def test_gsm8k(path, tmp_path):
    report, rows = converted("gsm8k", path, tmp_path)
    source = read_jsonl(path)
    assert report.written == len(source) and not report.bad
    split = "test" if "test" in path.name else "train"  # from the file name
    check_rows(rows, "gsm8k", split, source, "question")
    for row, raw in zip(rows, source):
        gold = row["reward_model"]["ground_truth"]
        assert gold == raw["answer"].split("####")[-1].strip().replace(",", "")
        assert reward_fns.gsm8k.compute_score("gsm8k", f"<answer>{gold}</answer>", gold) == 1.0
        assert row["extra_info"]["solution"] == raw["answer"]


@pytest.mark.parametrize("path", copies("math500_test.jsonl"))
def test_math500(path, tmp_path):
    report, rows = converted("math500", path, tmp_path)
    source = read_jsonl(path)
    assert report.written == len(source) and not report.bad
    check_rows(rows, "math500", "test", source, "problem")
    for row, raw in zip(rows, source):
        assert row["reward_model"]["ground_truth"] == raw["answer"]  # which the math verifier accepts (test_reward_fns)
        assert row["extra_info"]["unique_id"] == raw["unique_id"]


def test_math500_without_answer_field_uses_the_boxed_solution(tmp_path):
    """Parquet and JSON inputs too."""
    source = read_jsonl(SAMPLES / "math500_test.jsonl")
    stripped = [{k: v for k, v in row.items() if k != "answer"} for row in source]
    pd.DataFrame(stripped).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "in.json").write_text(json.dumps(stripped))
    for name in ("in.parquet", "in.json"):
        report, rows = converted("math500", tmp_path / name, tmp_path, split="test")
        assert report.written == len(source)
        for row, raw in zip(rows, source):
            gold = row["reward_model"]["ground_truth"]
            assert reward_fns.math.compute_score("math500", f"<answer>{gold}</answer>", raw["answer"]) == 1.0


def test_metamathqa_keeps_the_math_subset(tmp_path, capsys):
    """The sample is hand-written in MetaMathQA's schema (no real copy is available offline)."""
    report, rows = converted("metamathqa", SAMPLES / "metamathqa_sample.jsonl", tmp_path)
    assert [row["reward_model"]["ground_truth"] for row in rows] == ["\\frac{7}{8}", "7", "3", "720"]
    assert [row["extra_info"]["prompt_id"] for row in rows] == [f"metamathqa-train-{i}" for i in (0, 2, 3, 7)]
    assert {row["extra_info"]["type"] for row in rows} == {"MATH_AnsAug", "MATH_Rephrased", "MATH_SV", "MATH_FOBAR"}
    assert report.outside_subset == 2
    assert [prompt_id for prompt_id, _ in report.bad] == ["metamathqa-train-5", "metamathqa-train-6"]
    err = capsys.readouterr().err
    assert "metamathqa-train-5: 'response' does not end with 'The answer is: <answer>'" in err
    assert "metamathqa-train-6: missing or empty 'query'" in err
    assert "wrote 4 rows" in err and "skipped 2 bad rows; 2 rows outside the subset" in err


def test_bad_rows_are_reported_by_id_and_skipped(tmp_path, capsys):
    good = read_jsonl(SAMPLES / "gsm8k_test.jsonl")[:3]
    lines = [json.dumps(good[0]), json.dumps({"question": "", "answer": "#### 3"}), json.dumps({"question": "q"}),
             "{not json", json.dumps(good[1]), json.dumps({"question": "q", "answer": "It is 4."}),
             json.dumps({"question": "q", "answer": "#### four"}), json.dumps(["a list"]), json.dumps(good[2])]
    source = tmp_path / "gsm8k_test.jsonl"
    source.write_text("\n".join(lines) + "\n")
    report, rows = converted("gsm8k", source, tmp_path)
    assert [row["extra_info"]["prompt_id"] for row in rows] == ["gsm8k-test-0", "gsm8k-test-4", "gsm8k-test-8"]
    assert dict(report.bad) == {
        "gsm8k-test-1": "missing or empty 'question'",
        "gsm8k-test-2": "missing or empty 'answer'",
        "gsm8k-test-3": "line 4 is not JSON (Expecting property name enclosed in double quotes)",
        "gsm8k-test-5": "no '#### <number>' in 'answer'",
        "gsm8k-test-6": "gold after '####' is not a number: 'four'",
        "gsm8k-test-7": "not an object but list",
    }
    err = capsys.readouterr().err
    assert all(f"skipped {prompt_id}: " in err for prompt_id, _ in report.bad)
    assert "wrote 3 rows" in err and "skipped 6 bad rows" in err


def test_no_surviving_rows_fails_without_writing(tmp_path, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps({"question": "q", "answer": "no gold"}) + "\n")
    out = tmp_path / "out.parquet"
    assert main(["gsm8k", "--input", str(source), "--output", str(out)]) == 1
    assert not out.exists()
    assert "no usable rows" in capsys.readouterr().err


def test_a_missing_local_file_is_not_looked_up_on_the_hub(tmp_path, capsys):
    for missing in (str(tmp_path / "gone.jsonl"), "gone.parquet", "./gsm8k", "a/b/c"):
        assert main(["gsm8k", "--input", missing, "--output", str(tmp_path / "o.parquet")]) == 2
        assert "no such file" in capsys.readouterr().err


def test_hub_names_go_to_load_dataset(tmp_path, monkeypatch):
    import datasets

    calls = []
    rows = read_jsonl(SAMPLES / "gsm8k_test.jsonl")[:2]
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or rows)
    report, _ = converted("gsm8k", "openai/gsm8k", tmp_path, split="test")
    assert report.written == 2
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]


def test_verl_reads_the_output(tmp_path, tiny_model_path):
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    out = tmp_path / "math500.parquet"
    prepare("math500", str(SAMPLES / "math500_test.jsonl"), str(out))
    config = OmegaConf.create({"cache_dir": str(tmp_path / "cache"), "prompt_key": "prompt", "max_prompt_length": 8192,
                               "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1})
    dataset = RLHFDataset([str(out)], AutoTokenizer.from_pretrained(tiny_model_path), config)
    assert len(dataset) == 30
    item = dataset[3]
    assert item["raw_prompt"][0]["content"] == INSTRUCTION
    assert item["index"] == 3 and item["extra_info"]["prompt_id"] == "math500-test-3"
    assert item["reward_model"]["ground_truth"] == read_jsonl(SAMPLES / "math500_test.jsonl")[3]["answer"]


def test_command_line(tmp_path):
    out = tmp_path / "gsm8k.parquet"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "data" / "prepare.py"), "gsm8k",
         "--input", str(SAMPLES / "gsm8k_train.jsonl"), "--output", str(out), "--split", "train"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"gsm8k: wrote 30 rows to {out}; skipped 0 bad rows" in proc.stderr
    assert len(pd.read_parquet(out)) == 30


def test_output_over_the_input_is_refused(tmp_path, capsys):
    source = FIXTURES / "data" / "gsm8k_train.jsonl"
    copy = tmp_path / "g.jsonl"
    copy.write_bytes(source.read_bytes())
    assert main(["gsm8k", "--input", str(copy), "--output", str(copy)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert copy.read_bytes() == source.read_bytes()
