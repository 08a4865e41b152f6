"""The README's main-job command, as written there, on a shortened setting (fewer prompts and validation
samples). The embedded reference policy is the real one: built by verl's SFT trainer on first use (about 6
minutes on 2 cores) and cached. Its console is the quiet one a newcomer sees: progress, one line per validation,
the phase lines and the summary, under the line budget; verl's, Ray's and vLLM's output is in the run's log."""

import json
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tests.conftest import import_rows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CONSOLE_BUDGET = 60  # lines, a progress bar counted by its final state


def test_readme_main_job_runs_and_prints_the_summary(main_job):
    workdir, proc, metrics = main_job
    output = proc.stdout + proc.stderr
    assert "DRIFT finished" in output
    summary = output.split("DRIFT finished")[1]
    assert re.search(r"validation drift_tiny_add: step 0 -> step 8", summary), summary[:2000]
    for name in ("solved_within_1", "solved_within_5", "non_repeat_ratio"):
        assert re.search(rf"{name}\s+\d\.\d{{3}} ->\s+\d\.\d{{3}}", summary), name
    # the change with its interval, paired by problem, from verl's validation dumps in the run folder
    assert re.search(r"change in solved_within_5: [+-]\d\.\d{3} \(95% CI [+-]\d\.\d{3} to [+-]\d\.\d{3}; paired over "
                     r"\d+ problems\)", summary), summary[:2000]
    assert (workdir / "checkpoints" / "drift_verl" / "drift_tiny" / "validation" / "8.jsonl").is_file()
    # beside the raw non-repeat ratio, one that selection cannot move: the reference and the trained policy (the
    # last checkpoint's Hugging Face folder) answer turn 2 of the same conversations from the store
    assert re.search(r"repeats_fixed_context\s+\d\.\d{3} ->\s+\d\.\d{3}\n    change in repeats_fixed_context: "
                     r"[+-]\d\.\d{3} \(95% CI [+-]\d\.\d{3} to [+-]\d\.\d{3}; paired over the same \d+ turn-2 "
                     r"contexts x 4 answers\)", summary), summary[:3000]
    # the embedded reference policy answers: 16 prompts x 8 samples, about 60% solved within 5 turns
    assert metrics[0]["drift/reference/solved_within_5"] > 0.2
    assert metrics[8]["training/global_step"] == 8
    _the_console_is_quiet_and_the_log_has_the_rest(proc, workdir)
    _imports_as_the_agent_loop_made_it(workdir)


def console_lines(text: str) -> list[str]:
    """The lines a terminal ends up showing: a progress bar rewritten with carriage returns counts once."""
    return [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]


def _the_console_is_quiet_and_the_log_has_the_rest(proc, workdir):
    run = workdir / "checkpoints" / "drift_verl" / "drift_tiny"
    out, err = console_lines(proc.stdout), console_lines(proc.stderr)
    assert len(out) + len(err) < CONSOLE_BUDGET, "\n".join(out + err)
    assert out[0] == f"drift-verl: run folder: {run}"
    assert out[1].startswith(f"drift-verl: log: {run / 'console.log'} ")
    assert out[-1] == f"drift-verl: log: {run / 'console.log'}; metrics: {run / 'metrics.jsonl'}"
    validations = [line for line in out if line.startswith("[drift] validation at step")]
    assert [line.split(":")[0] for line in validations] == ["[drift] validation at step 0", "[drift] validation at step 8"]
    assert all(re.search(r"drift_tiny_add: solved<=1 \d\.\d{3}, solved<=5 \d\.\d{3}, non-repeat \d\.\d{3}", line)
               for line in validations), validations
    assert any(line.startswith("[drift] trajectory store: ") for line in out)
    assert any(line.startswith("[drift] weights: ESS fraction") for line in out)
    for bar in ("DRIFT round 0 phase 1: rollouts (shards): 100%", "DRIFT round 0 phase 3: weighted SFT (steps): 100%"):
        assert any(line.startswith(bar) for line in err), (bar, err)
    console = proc.stdout + proc.stderr
    log = (run / "console.log").read_text()
    for verl_output in ("ray init kwargs", "(TaskRunnerV1 pid=", "engine is not available",
                        f"Creating file logger at {run / 'metrics.jsonl'}"):  # verl's tracker got the run's file
        assert verl_output in log and verl_output not in console, verl_output
    assert "DRIFT finished" in log  # the summary is in the log too


def _imports_as_the_agent_loop_made_it(workdir):
    """The reference policy's conversations (vLLM, the feedback agent loop), exported with only their messages and
    rewards and imported: the same token ids, masks and assistant-turn spans, row for row, for every trajectory
    whose answers all ended with EOS (an answer cut off by the token limit is imported with an EOS) and whose
    answers' text survives decoding (an untrained model's broken bytes are imported as their decoded text)."""
    import pyarrow.parquet as pq

    from drift_verl.tiny.assets import tiny_reference

    (store,) = [p for p in (workdir / "drift_store").iterdir() if p.is_dir()]
    rows = [r for shard in sorted(store.glob("shard-*.parquet")) for r in pq.read_table(shard).to_pylist()]
    imported = import_rows(rows, workdir, tiny_reference())
    again = [r for shard in sorted(imported.glob("shard-*.parquet")) for r in pq.read_table(shard).to_pylist()]
    eos = json.loads((Path(tiny_reference()) / "config.json").read_text())["eos_token_id"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_reference())

    def survives_decoding(ids: list[int]) -> bool:  # else the importer tokenises the text as decoded (README)
        return tokenizer.encode(tokenizer.decode(ids), add_special_tokens=False) == ids

    ended = [i for i, r in enumerate(rows) if all(r["response_ids"][end - 1] == eos for _, end in r["turn_spans"])]
    assert len(ended) >= 0.8 * len(rows), (len(ended), len(rows))
    ended = [i for i in ended if all(survives_decoding(rows[i]["response_ids"][start:end - 1])
                                     for start, end in rows[i]["turn_spans"])]
    assert len(ended) >= 0.75 * len(rows), (len(ended), len(rows))
    fields = ["prompt_id", "sample", "prompt_ids", "response_ids", "response_mask", "turn_spans", "turn_rewards"]
    assert [[again[i][k] for k in fields] for i in ended] == [[rows[i][k] for k in fields] for i in ended]
