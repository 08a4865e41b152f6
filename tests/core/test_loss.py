"""DRIFT's loss through verl's own ppo_loss (registry, padding, aggregation) vs the formula in plain PyTorch."""

import pytest
import torch
from hydra import compose, initialize_config_module
from tensordict import TensorDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from drift_verl.core.loss import padded_batch, trained_mask

FEEDBACK = "Incorrect. Please think again."


def _trajectory(tokenizer, question: str, turns: list[str]) -> dict:
    """A multi-turn trajectory laid out as the feedback agent loop stores it."""
    messages = [{"role": "user", "content": question}]
    prompt_ids = tokenizer(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))[
        "input_ids"
    ]
    response, mask, spans = [], [], []
    for index, answer in enumerate(turns):
        ids = tokenizer(answer + "<|im_end|>")["input_ids"]
        spans.append([len(response), len(response) + len(ids)])
        response += ids
        mask += [1] * len(ids)
        if index < len(turns) - 1:
            feedback = tokenizer(f"\n<|im_start|>user\n{FEEDBACK}<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
            response += feedback
            mask += [0] * len(feedback)
    return {"prompt_ids": list(prompt_ids), "response_ids": response, "response_mask": mask, "turn_spans": spans}


@pytest.fixture(scope="module")
def actor_config():
    from verl.utils.config import omega_conf_to_dataclass

    with initialize_config_module(config_module="recipes", version_base=None):
        config = compose(config_name="drift_main", overrides=["recipe=drift", "platform=cpu"])
    return omega_conf_to_dataclass(config.actor_rollout_ref.actor)


def _next_token_log_probs(model, tensors) -> torch.Tensor:
    """verl's no-padding model output: per valid token, log p(next token), flattened over the batch."""
    logits = model(
        input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"], position_ids=tensors["position_ids"]
    ).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    next_ids = torch.roll(tensors["input_ids"], shifts=-1, dims=1)
    per_token = log_probs.gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)
    return per_token[tensors["attention_mask"].bool()]


@pytest.mark.parametrize("train_turns", ["last", "all"])
def test_loss_and_gradient_match_the_formula(tiny_model_path, actor_config, train_turns):
    import verl  # noqa: F401  (loads the plugin, which registers the loss)

    assert actor_config.policy_loss.loss_mode == "drift"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    rows = [
        _trajectory(tokenizer, "What is 3 + 4?", ["<answer>6</answer>", "<answer>7</answer>"]),
        _trajectory(tokenizer, "What is 10 + 10?", ["<answer>20</answer>"]),
        _trajectory(tokenizer, "What is 1 + 2?", ["no idea", "<answer>4</answer>", "<answer>3</answer>"]),
    ]
    weights = torch.tensor([1.7, 0.2, 1.1])
    tensors = padded_batch(rows, weights, 24, 64, tokenizer.pad_token_id, train_turns)
    size = len(rows)

    # verl: the registered loss inside verl's ppo_loss, the whole batch as one micro-batch on one rank
    verl_loss, metrics = _micro_batch_loss(model, actor_config, tensors, list(range(size)), 1, size, None)
    verl_loss.backward()
    verl_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    # the formula: mean_i w_i * token-mean NLL over the trained tokens
    direct_loss = (weights * _token_mean_nll(model, tensors, rows, train_turns)).mean()
    direct_loss.backward()

    assert verl_loss.item() == pytest.approx(direct_loss.item(), rel=1e-5)
    for got, want in zip(verl_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert metrics["actor/pg_loss"] is not None


def test_trained_mask_last_turn_only():
    row = {"response_mask": [1, 1, 0, 0, 1, 1, 1], "turn_spans": [[0, 2], [4, 7]]}
    assert trained_mask(row, 7, "last").tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert trained_mask(row, 7, "all").tolist() == [1, 1, 0, 0, 1, 1, 1]
    assert trained_mask(row, 5, "last").tolist() == [0, 0, 0, 0, 1]  # response truncated by the length budget
    with pytest.raises(ValueError, match="train_turns"):
        trained_mask(row, 7, "first")


def test_loss_agg_mode_is_honoured():
    """actor.loss_agg_mode reaches the aggregation: the recipe's seq-mean-token-mean (each trajectory's token mean,
    then the weighted mean over trajectories) and, if a user sets it, verl's token-mean (longer ones count more)."""
    import verl  # noqa: F401
    from drift_verl.core.loss import weighted_nll_loss

    log_prob = torch.tensor([[-1.0, -3.0, 0.0], [-2.0, -2.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    weights = torch.tensor([[0.5, 0.5, 0.5], [1.5, 1.5, 1.5]])
    seq, _ = weighted_nll_loss(log_prob, log_prob, weights, mask, "seq-mean-token-mean")
    token, _ = weighted_nll_loss(log_prob, log_prob, weights, mask, "token-mean")
    assert seq.item() == pytest.approx((0.5 * 2.0 + 1.5 * 2.0) / 2)
    assert token.item() == pytest.approx((0.5 * 1 + 0.5 * 3 + 1.5 * 6) / 5)


def test_logged_nll_is_the_mean_per_trajectory_over_unequal_micro_batches():
    """use_dynamic_bsz splits a mini-batch into micro-batches of unequal sizes and verl averages each metric over
    them: the logged NLL must still be the mini-batch's mean over trajectories."""
    import verl  # noqa: F401
    from drift_verl.core.loss import nll_metric, weighted_nll_loss

    log_prob = -torch.tensor([[1.0, 1.0], [2.0, 4.0], [6.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    per_micro_batch = [weighted_nll_loss(log_prob[s], log_prob[s], torch.ones_like(mask[s]), mask[s])[1]
                       for s in (slice(0, 1), slice(1, 3))]
    averaged = {f"actor/{k}": sum(m[k] for m in per_micro_batch) / 2 for k in per_micro_batch[0]}
    assert nll_metric(averaged) == {"actor/drift/nll": pytest.approx((1.0 + 3.0 + 6.0) / 3)}


def _micro_batch_loss(model, actor_config, tensors, index: list[int], dp_size: int, step_size: int,
                      tokens: int | None) -> tuple[torch.Tensor, dict]:
    """verl's ppo_loss on one micro-batch of one data-parallel rank, with the global batch info its engine sets:
    dp_size, the step's token count and the step's size (``global_batch_size``, what DRIFT's driver passes)."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    part = {key: value[torch.tensor(index)] for key, value in tensors.items()}
    log_probs = _next_token_log_probs(model, part)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), part["attention_mask"].sum(dim=1).cumsum(0)])
    data = TensorDict({k: v for k, v in part.items() if k != "input_ids"}, batch_size=len(index))
    tu.assign_non_tensor(data, dp_size=dp_size, batch_num_tokens=tokens, global_batch_size=step_size)
    return ppo_loss(actor_config, {"log_probs": torch.nested.nested_tensor_from_jagged(log_probs, offsets=offsets)},
                    data)


def _token_mean_nll(model, tensors, rows, train_turns) -> torch.Tensor:
    """L_i: each trajectory's mean NLL over its trained tokens, in plain PyTorch."""
    logits = model(
        input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"], position_ids=tensors["position_ids"]
    ).logits
    prompt_len = tensors["prompts"].shape[1]
    response_logits = logits[:, prompt_len - 1 : -1].float()
    token_nll = torch.nn.functional.cross_entropy(
        response_logits.reshape(-1, response_logits.shape[-1]), tensors["responses"].reshape(-1), reduction="none"
    ).view(len(rows), -1)
    nll = []
    for i, row in enumerate(rows):
        mask = torch.tensor(trained_mask(row, len(row["response_ids"]), train_turns), dtype=torch.float32)
        nll.append((token_nll[i, : len(mask)] * mask).sum() / mask.sum())
    return torch.stack(nll)


@pytest.mark.parametrize("mode", ["mean", "weight_sum"])
def test_step_normalisation_is_exact_over_micro_batches_and_ranks(tiny_model_path, actor_config, mode):
    """drift.loss_normalization: the driver normalises the whole step's weights (step_weights), then verl splits the
    step over 2 data-parallel ranks and unequal micro-batches (as use_dynamic_bsz does, reordered too). The summed
    micro-batch losses, averaged over ranks as the data-parallel all-reduce averages gradients, give exactly
    mean: sum w L / B, weight_sum: sum w L / sum w; loss and gradients."""
    import verl  # noqa: F401
    from drift_verl.core.weights import step_weights

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    rows = [
        _trajectory(tokenizer, "What is 3 + 4?", ["<answer>6</answer>", "<answer>7</answer>"]),
        _trajectory(tokenizer, "What is 3 + 4?", ["<answer>8</answer>", "<answer>8</answer>", "<answer>5</answer>"]),
        _trajectory(tokenizer, "What is 10 + 10?", ["<answer>20</answer>"]),
        _trajectory(tokenizer, "What is 10 + 10?", ["twenty", "<answer>21</answer>"]),
        _trajectory(tokenizer, "What is 1 + 2?", ["no idea", "<answer>4</answer>", "<answer>3</answer>"]),
        _trajectory(tokenizer, "What is 1 + 2?", ["<answer>3</answer>"]),
    ]
    weights = torch.tensor([2.4, 0.0, 0.3, 0.0, 1.9, 0.6], dtype=torch.float64)  # sum 5.2 over B = 6
    step = step_weights(weights.numpy(), mode)
    tensors = padded_batch(rows, step, 24, 64, tokenizer.pad_token_id, "last")
    size, tokens = len(rows), int(tensors["response_mask"].sum())
    ranks = [[[0], [1, 2]], [[5, 3], [4]]]  # per rank: its micro-batches, of unequal sizes

    rank_grads, rank_losses = [], []
    for micro_batches in ranks:
        model.zero_grad()
        total = 0.0
        for index in micro_batches:  # gradient accumulation: one backward per micro-batch, gradients add up
            loss, _ = _micro_batch_loss(model, actor_config, tensors, index, len(ranks), size, tokens)
            loss.backward()
            total += loss.item()
        rank_grads.append([p.grad.clone() for p in model.parameters()])
        rank_losses.append(total)
    verl_grads = [torch.stack(per_rank).mean(0) for per_rank in zip(*rank_grads)]  # FSDP's all-reduce: average
    verl_loss = sum(rank_losses) / len(ranks)

    model.zero_grad()
    nll = _token_mean_nll(model, tensors, rows, "last")
    w = weights.float()
    direct = (w * nll).sum() / (size if mode == "mean" else w.sum())
    direct.backward()

    assert verl_loss == pytest.approx(direct.item(), rel=1e-5)
    for got, want in zip(verl_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    if mode == "weight_sum":  # and it is not the mean's value: the weights sum to 5.2, not 6
        assert direct.item() == pytest.approx(((w * nll).sum() / size).item() * size / 5.2, rel=1e-6)
        assert verl_loss != pytest.approx(((w * nll).sum() / size).item(), rel=1e-3)
