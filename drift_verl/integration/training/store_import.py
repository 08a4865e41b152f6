"""Trajectories made elsewhere (the paper's scripts, another engine) into a trajectory store DRIFT trains on.

Each conversation is tokenised the way the feedback agent loop tokenises the ones it plays: verl's Continuous
Token builder for the model (``build_initial_tokens`` for the messages before the first answer, then
``merge_assistant_tokens`` for each answer, its text's tokens and EOS, and ``merge_context_tokens`` for the
environment's messages), so masks and assistant-turn spans match a store phase 1 makes. Bad rows are reported
and skipped; prompts without the usual number of trajectories are skipped as whole groups (weights are
normalised within a group).

Two passes, so memory holds no trajectory: rows are tokenised into a staging Arrow file, then gathered by
prompt into shards. Shards are written whole (temporary file + rename): re-running an interrupted import
writes only the missing ones.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from drift_verl.core.metrics import solved_turn
from drift_verl.core.reference_format import parse_messages, parse_reference_row, read_rows
from drift_verl.core.identity import content_identity, tokenizer_identity
from drift_verl.core.store import SCHEMA, TrajectoryStore
from drift_verl.core.weights import WeightInputError
from drift_verl.integration.job import console

STAGING_BATCH = 512


def conversation_tokens(builder, tokenizer, messages: list[dict]) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """(prompt ids, response ids, response mask, assistant-turn spans) of a conversation, built with verl's
    Continuous Token ``builder`` in the order the feedback agent loop calls it. Environment messages after the
    last answer are left out: the loop never ends on one."""
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if not first:
        raise ValueError("expected the prompt's messages, then an assistant answer")
    history = list(messages[:first])
    prompt_ids = list(builder.build_initial_tokens(history))
    tokens, mask, spans = list(prompt_ids), [], []
    index = first
    while index < len(messages):
        if messages[index]["role"] == "assistant":
            answer = tokenizer.encode(messages[index]["content"], add_special_tokens=False) + [tokenizer.eos_token_id]
            start = len(mask)
            merge = builder.merge_assistant_tokens(tokens, answer)
            mask, _ = builder.align_response_metadata(merge, mask, None)
            tokens = merge.token_ids
            spans.append([start, len(mask)])
            history.append(messages[index])
            index += 1
            continue
        following = next((i for i in range(index, len(messages)) if messages[i]["role"] == "assistant"), None)
        if following is None:
            break
        merge = builder.merge_context_tokens(history, history + messages[index:following], tokens)
        mask, _ = builder.align_response_metadata(merge, mask, None)
        tokens, history, index = merge.token_ids, history + messages[index:following], following
    return prompt_ids, tokens[len(prompt_ids):], mask, spans


def load_tokenizer(model: str, chat_template: str | None, chat_template_kwargs: dict | None):
    """The policy's tokenizer (``chat_template``: a custom template's text, as ``model.custom_chat_template``)
    and verl's Continuous Token builder for its model family."""
    from transformers import AutoConfig
    from verl.utils.tokenizer import hf_tokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    tokenizer = hf_tokenizer(model)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    model_type = getattr(AutoConfig.from_pretrained(model), "model_type", None)
    builder = create_continuous_token_builder(tokenizer, hf_model_type=model_type,
                                              chat_template_kwargs=chat_template_kwargs or {})
    return tokenizer, builder


@dataclass
class ImportReport:
    store: TrajectoryStore | None = None
    trajectories: int = 0
    bad_rows: list[str] = field(default_factory=list)  # one message per skipped row, naming it and its field
    incomplete_groups: list[str] = field(default_factory=list)


def _store_row(row: dict, where: str, tokenizer, builder, data_source: str) -> dict:
    parsed = parse_reference_row(row, where)
    messages = parse_messages(row, where)
    try:
        prompt_ids, response_ids, mask, spans = conversation_tokens(builder, tokenizer, messages)
    except ValueError as error:
        raise WeightInputError(f"{where}: field 'messages': {error}") from None
    if len(spans) != len(parsed.turn_rewards):
        raise WeightInputError(f"{where}: field 'turn_rewards' has {len(parsed.turn_rewards)} turns but 'messages' "
                               f"has {len(spans)} assistant answers; expected one reward per answer")
    return {"prompt_id": parsed.prompt_id, "sample": 0, "data_source": str(row.get("data_source") or data_source),
            "ground_truth": str(row.get("ground_truth") or ""), "prompt_ids": prompt_ids,
            "response_ids": response_ids, "response_mask": mask, "turn_spans": spans,
            "turn_rewards": parsed.turn_rewards, "answers": parsed.answers, "format_penalty": parsed.format_penalty,
            "t_star": solved_turn(parsed.turn_rewards), "verifier_failures": 0, "messages": json.dumps(messages)}


def _stage(source: Path, staging: Path, tokenizer, builder, data_source: str, report: ImportReport):
    """Pass 1: every good row tokenised into ``staging``; returns the prompt id of each staged row and the
    longest prompt, response and conversation (in turns)."""
    prompt_ids, longest = [], [0, 0, 0]
    pending: list[dict] = []
    with pa.OSFile(str(staging), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
        for where, row in console.progress(read_rows(source), desc="import: tokenising", unit=" rows", mininterval=2):
            try:
                if isinstance(row, WeightInputError):
                    raise row
                stored = _store_row(row, where, tokenizer, builder, data_source)
            except WeightInputError as error:
                report.bad_rows.append(str(error))
                continue
            pending.append(stored)
            prompt_ids.append(stored["prompt_id"])
            longest = [max(longest[0], len(stored["prompt_ids"])), max(longest[1], len(stored["response_ids"])),
                       max(longest[2], len(stored["turn_spans"]))]
            if len(pending) >= STAGING_BATCH:
                writer.write_table(pa.Table.from_pylist(pending, schema=SCHEMA))
                pending = []
        if pending:
            writer.write_table(pa.Table.from_pylist(pending, schema=SCHEMA))
    return prompt_ids, longest


def import_store(source: str | Path, model: str, out: str | Path, *, chat_template: str | None = None,
                 chat_template_kwargs: dict | None = None, samples_per_prompt: int | None = None,
                 prompts_per_shard: int = 16, data_source: str = "imported", reference: str | None = None) -> ImportReport:
    """Import ``source`` (JSONL, parquet or a ``datasets`` folder) into a store under ``out`` (a store folder,
    ``out/<fingerprint>``, as ``drift.store_dir``). ``samples_per_prompt`` defaults to the most common group
    size; other groups are skipped."""
    source, out = Path(source), Path(out)
    tokenizer, builder = load_tokenizer(model, chat_template, chat_template_kwargs)
    report = ImportReport()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".import-staging-{os.getpid()}.arrow"
    try:
        staged_prompts, (prompt_len, response_len, max_turns) = _stage(
            source, staging, tokenizer, builder, data_source, report)
        groups: dict[str, list[int]] = {}
        for index, prompt_id in enumerate(staged_prompts):
            groups.setdefault(prompt_id, []).append(index)
        if not groups:
            return report
        n = samples_per_prompt or Counter(len(rows) for rows in groups.values()).most_common(1)[0][0]
        report.incomplete_groups = [f"prompt {p!r}: {len(rows)} trajectories, not {n}"
                                    for p, rows in groups.items() if len(rows) != n]
        kept = [rows for rows in groups.values() if len(rows) == n]
        if not kept:
            return report
        spec = {
            "imported": {"source": content_identity(str(source)), "data_source": data_source},
            "reference": reference,
            "tokenizer": tokenizer_identity(model, chat_template),
            "chat_template_kwargs": chat_template_kwargs or {},
            "n": n,
            "lengths": [prompt_len, response_len],
            "env": {"max_turns": max_turns},
        }
        report.store = store = TrajectoryStore(out, spec, len(kept), prompts_per_shard)
        report.trajectories = len(kept) * n
        with pa.memory_map(str(staging)) as mapped:
            staged = pa.ipc.open_file(mapped).read_all()
            for shard in console.progress(store.missing_shards(), desc="import: writing shards", unit=" shards",
                                          mininterval=2):
                prompts = store.shard_prompts(shard)
                rows = staged.take(np.concatenate([kept[p] for p in prompts]))
                samples = pa.array(np.tile(np.arange(n, dtype=np.int32), len(prompts)), pa.int32())
                store.write_table(shard, rows.set_column(SCHEMA.get_field_index("sample"), SCHEMA.field("sample"), samples))
        return report
    finally:
        staging.unlink(missing_ok=True)
