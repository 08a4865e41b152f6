"""The multi-turn feedback environment as a verl agent loop, used by both recipes; the recipes register it as
``drift_feedback`` through verl's agent-loop list (``recipes/agent_loops.yaml``).

Per turn: generate through verl's rollout server, parse the answer, score it with the configured verifier
(verl's ``compute_score`` signature), and on a wrong answer append what the environment says
(:mod:`drift_verl.core.environment`, ``drift.env.name``) and go again, up to ``drift.env.max_turns``; stop at the
first correct answer (turn t*), or when the environment ends the conversation or breaks its contract (the
trajectory keeps what it has, and counts one environment failure). Only assistant tokens are trainable
(``response_mask``); each assistant turn's token span is recorded so DRIFT can train the last turn only.
The trajectory's return (:mod:`drift_verl.core.weights`) is the reward, so GRPO and DRIFT optimise the same thing;
it reaches verl's ``rm_scores`` split by turn (:class:`TurnCreditOutput`) for turn-level credit.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from typing import Any
from uuid import uuid4

from omegaconf import OmegaConf
import torch
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput

from drift_verl.core.answers import get_parser, normalize
from drift_verl.core.config import DriftConfig
from drift_verl.core.environment import EnvError, checked_message, environment_class
from drift_verl.core.metrics import solved_turn, trajectory_info
from drift_verl.core.weights import FORMAT_PENALTY, turn_contributions
from drift_verl.integration.verifier import VerifierFailed, shared_pool

logger = logging.getLogger(__name__)


def _in_daemon_thread(call) -> asyncio.Future:
    """``call()`` in a thread of its own, its result on the running loop. A daemon thread, not an executor's: a
    call that never returns must not hold a pool verl's work waits for, nor keep the process from exiting."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, error):
        if not future.done():  # else it was given up (timed out)
            future.set_exception(error) if error is not None else future.set_result(result)

    def target():
        try:
            outcome = (call(), None)
        except BaseException as error:  # noqa: BLE001  (the user's code: whatever it raises is its result)
            outcome = (None, error)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop has closed since: nobody waits for this call any more
            pass

    threading.Thread(target=target, daemon=True, name="drift-environment").start()
    return future


class TurnCreditOutput(AgentLoopOutput):
    """verl puts the whole reward at a response's last token; this output puts each turn's share of the return at
    that turn's last token instead. The shares sum to the return, so whatever sums ``rm_scores`` (GRPO, metrics)
    is unchanged, and ``algorithm.adv_estimator=grpo_turn`` can credit each turn (:mod:`drift_verl.core.turn_credit`)."""

    turn_credit: list[tuple[int, float]] = []  # (response token index, share of the return)

    def as_dict(self) -> dict[str, Any]:
        output = super().as_dict()
        output.pop("turn_credit", None)
        scores = torch.zeros_like(output["response_mask"], dtype=torch.float32)
        for position, share in self.turn_credit:
            scores[position] += share
        output["rm_scores"] = scores
        return output


class FeedbackAgentLoop(AgentLoopBase):
    # verl builds an agent loop per trajectory, each on its worker's one config: its drift: section is parsed once
    _parsed: tuple[Any, DriftConfig] | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if FeedbackAgentLoop._parsed is None or FeedbackAgentLoop._parsed[0] is not self.config:
            FeedbackAgentLoop._parsed = (self.config, DriftConfig.from_section(self.config.drift))
        drift = FeedbackAgentLoop._parsed[1]
        env = self.env = drift.env
        self.max_turns = env.max_turns
        self.parse = get_parser(env.answer_format)
        self.verifier_pool = shared_pool(env.verifier_workers, env.verifier_memory_mb)
        self.environment_class = environment_class(env.name)
        self.weight_config = drift.weight_config()  # gamma and lambda of the return, as phase 2 reads them
        self.response_length = self.rollout_config.response_length
        verifier = self.config.reward.get("custom_reward_function") or {}
        if not verifier.get("path"):
            raise ValueError("drift_feedback needs a verifier: set reward.custom_reward_function.path/name")
        kwargs = OmegaConf.to_container(OmegaConf.create(dict(verifier.get("reward_kwargs") or {})), resolve=True)
        self.verifier = (str(verifier.path), str(verifier.name), kwargs)

    async def _score(self, data_source, text, ground_truth, extra_info) -> tuple[float, bool]:
        """(reward, verifier_ok). A verifier that raises, runs past its time or memory, or crashes scores 0."""
        path, name, kwargs = self.verifier
        call = functools.partial(self.verifier_pool.call, path, name, (data_source, text, ground_truth, extra_info),
                                 kwargs, self.env.verifier_timeout_s)
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.verifier_pool.executor, call)
        except VerifierFailed as error:
            logger.warning("verifier failed (%s); scoring 0", error)
            return 0.0, False
        score = result.get("score", 0.0) if isinstance(result, dict) else result
        return float(score), True

    async def _environment(self, what: str, call) -> str | None:
        """One call into the environment, in a thread, bounded by ``drift.env.env_timeout_s`` and checked against
        its contract; :class:`EnvError` naming the call when it raises, runs too long or returns garbage (a call that
        never returns keeps its daemon thread, not the trajectory: Python cannot stop a thread)."""
        try:
            return checked_message(await asyncio.wait_for(_in_daemon_thread(call), self.env.env_timeout_s))
        except EnvError as error:
            raise EnvError(f"{self.env.name}.{what}: {error}") from None
        except asyncio.TimeoutError:
            raise EnvError(f"{self.env.name}.{what}: no answer within {self.env.env_timeout_s} s "
                           "(drift.env.env_timeout_s)") from None
        except Exception as error:  # the user's code: whatever it raises ends this trajectory only
            raise EnvError(f"{self.env.name}.{what} raised {type(error).__name__}: {error}") from None

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        messages = list(kwargs["raw_prompt"])
        ground_truth = kwargs["reward_model"]["ground_truth"]
        data_source = kwargs.get("data_source", "")
        extra_info = kwargs.get("extra_info") or {}

        turn_rewards, answers, spans, server_fields, metrics = [], [], [], {}, {}
        verifier_failures, environment_failure = 0, ""
        try:
            environment = self.environment_class(self.env)
            opening = await self._environment("reset", lambda: environment.reset(
                {"ground_truth": ground_truth, "data_source": data_source, "extra_info": extra_info}))
        except Exception as error:  # noqa: BLE001  (a constructor's failure is the environment's too)
            environment, opening = None, None
            environment_failure = str(error) if isinstance(error, EnvError) else (
                f"{self.env.name}: {type(error).__name__}: {error}")
        if opening is not None:
            messages.append({"role": "user", "content": opening})
        prompt_ids = await self.ct_build_initial_tokens(messages)
        tokens, response_mask, logprobs = list(prompt_ids), [], []
        request_id = uuid4().hex
        # an environment that failed before the first answer: that answer alone (every stored trajectory has a turn)
        for turn in range(1, (self.max_turns if environment is not None else 1) + 1):
            budget = self.response_length - len(response_mask)
            params = dict(sampling_params, max_tokens=min(budget, self.env.turn_max_tokens or budget))
            output = await self.server_manager.generate(request_id=request_id, prompt_ids=tokens, sampling_params=params)
            for key, value in (output.extra_fields or {}).items():  # min/max_global_steps etc.: the trainer needs them
                server_fields.setdefault(key, value)
            start = len(response_mask)
            merge, response_mask, logprobs = await self.ct_merge_assistant_token(
                tokens, output.token_ids, response_mask, logprobs if output.log_probs else None,
                assistant_logprobs=output.log_probs or None,
            )
            tokens = merge.token_ids
            spans.append([start, len(response_mask)])
            text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
            answer = self.parse(text)
            reward, ok = await self._score(data_source, text, ground_truth, extra_info)
            verifier_failures += not ok
            answers.append(None if answer is None else normalize(answer))
            messages.append({"role": "assistant", "content": text})
            turn_rewards.append(reward)
            if reward >= 1.0 or turn == self.max_turns or environment is None:
                break
            try:
                said = await self._environment("step", functools.partial(environment.step, text, answers[-1], reward,
                                                                         turn))
            except EnvError as error:
                logger.warning("environment failed (%s); the trajectory ends at turn %d", error, turn)
                said, environment_failure = None, str(error)
            if said is None:
                break
            feedback = {"role": "user", "content": said}
            merge, mask_with_feedback, logprobs_with_feedback = await self.ct_merge_context_msg(
                messages, messages + [feedback], tokens, response_mask, logprobs or None
            )
            if len(mask_with_feedback) >= self.response_length:
                break  # no room left for another answer: end without a dangling feedback message
            messages.append(feedback)
            tokens, response_mask, logprobs = merge.token_ids, mask_with_feedback, logprobs_with_feedback or []

        solved_at = solved_turn(turn_rewards)
        given = [a for a in answers if a is not None]
        format_penalty = FORMAT_PENALTY * (len(answers) - len(given))
        shares = turn_contributions(turn_rewards, answers, self.weight_config.gamma, self.weight_config.repetition_coef,
                                    self.weight_config.partial_credit)
        response_ids = tokens[len(prompt_ids):]
        last = min(len(response_mask), self.response_length) - 1
        turn_credit = [(min(max(end - 1, 0), last), share) for (_, end), share in zip(spans, shares)]
        extra_fields = {
            **server_fields,
            "turn_rewards": turn_rewards,
            "answers": answers,
            "turn_spans": spans,
            "t_star": solved_at,
            "num_assistant_turns": len(turn_rewards),
            "format_penalty": format_penalty,
            "verifier_failures": verifier_failures,
            "environment_failure": environment_failure,  # what broke the environment's contract ("" when nothing)
            "messages": json.dumps(messages),
            # averaged by verl's validation per data source ("acc", solved within T, becomes its core metric) and
            # written per trajectory to its dump (trainer.validation_data_dir), which drift_verl.eval.evaluate reads; verl
            # skips strings when averaging, so data_source only labels the dumped rows
            "reward_extra_info": {**trajectory_info(turn_rewards, answers, self.max_turns),
                                  "verifier_failures": float(verifier_failures),
                                  "environment_failures": float(bool(environment_failure)),
                                  "data_source": str(data_source)},
        }
        return TurnCreditOutput(
            prompt_ids=list(prompt_ids),
            response_ids=response_ids[: self.response_length],
            response_mask=response_mask[: self.response_length],
            response_logprobs=logprobs[: self.response_length] if logprobs else None,
            reward_score=sum(shares),
            turn_credit=turn_credit,
            num_turns=2 * len(turn_rewards),
            metrics=metrics,
            extra_fields=extra_fields,
        )
