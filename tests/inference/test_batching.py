"""The running batch on its own: admitting, decoding and dropping rows keeps its five fields in step, and the
rows decode the same tokens as ``generate`` would give each prompt alone. A tiny random Llama, greedy."""

import torch

from inference.batching import Plan, RunningBatch, prefill_inputs
from inference.detok import Detokenizer
from inference.engine import GenerationRequest
from inference.output import RequestHandle
from inference.request import Request, RequestStatus
from tests.inference.test_engine import greedy_reference


def requests(tokenizer, *texts):
    out = []
    for text in texts:
        ids = tokenizer.encode(text)
        out.append(
            Request(
                GenerationRequest(ids, request_id=text), RequestHandle(text, engine=None), Detokenizer(tokenizer, ())
            )
        )
    return out


def prefill(model, reqs):
    """What the engine hands ``merge`` after one prefill forward: the rows' cache, mask, first tokens, positions."""
    plans = [Plan(r, r.generation.input_ids) for r in reqs]
    ids, mask, positions, cache = prefill_inputs(plans, model.config, pad_id=0, device="cpu")
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return reqs, out.past_key_values, mask, out.logits[:, -1, :].argmax(-1), mask.sum(-1)


def decode(model, batch, tokens, steps):
    """Greedy decode steps over the whole batch, noting each row's new token under its request."""
    for _ in range(steps):
        inputs = batch.decode_inputs()
        out = model(**inputs, use_cache=True, logits_to_keep=1)
        batch.advance(inputs, out.logits[:, -1, :].argmax(-1))
        for req, token in zip(batch.rows, batch.next.tolist()):
            tokens[req.request_id].append(token)


def assert_in_step(batch, reqs):
    """The five agree on the rows and their order, and each row is left-padded with its position counted."""
    assert batch.rows == reqs and len(batch) == len(reqs)
    assert batch.mask.shape[0] == batch.next.shape[0] == batch.positions.shape[0] == len(reqs)
    for layer in batch.cache.layers:
        assert layer.keys.shape[0] == layer.values.shape[0] == len(reqs)
        assert layer.keys.shape[-2] == layer.values.shape[-2] == batch.mask.shape[1]
    assert all(row == sorted(row) for row in batch.mask.tolist())  # [pad][tokens]: padding only on the left
    assert batch.positions.tolist() == batch.mask.sum(-1).tolist()


def assert_empty(batch):
    assert len(batch) == 0 and not batch
    assert (batch.rows, batch.cache, batch.mask, batch.next, batch.positions) == ([], None, None, None, None)


@torch.no_grad()
def test_merge_advance_keep_and_reset_keep_the_rows_in_step_and_decode_as_generate(tiny_llama, tokenizer):
    batch = RunningBatch()
    assert_empty(batch)
    first = requests(tokenizer, "Hello there", "What is the capital of France? Answer briefly.")
    late = requests(tokenizer, "Tell me a story about a cat, a long one with a dog and a bird in it too", "2+2=")
    tokens = {r.request_id: [] for r in first + late}

    def admit(reqs):
        new = prefill(tiny_llama, reqs)
        batch.merge(*new)
        for req, token in zip(reqs, new[3].tolist()):
            tokens[req.request_id].append(token)

    admit(first)
    assert_in_step(batch, first)
    assert all(r.status is RequestStatus.RUNNING for r in first)
    decode(tiny_llama, batch, tokens, 3)
    assert_in_step(batch, first)
    width = batch.mask.shape[1]
    assert len(late[0].generation.input_ids) > width > len(late[1].generation.input_ids)
    admit(late)  # wider than the batch, so the running rows get padded too
    assert_in_step(batch, first + late)
    decode(tiny_llama, batch, tokens, 2)

    batch.keep([0, 3])  # the two longest leave: the columns only they filled go with them
    assert_in_step(batch, [first[0], late[1]])
    assert bool(batch.mask[:, 0].any()) and batch.mask.shape[1] < width
    decode(tiny_llama, batch, tokens, 3)
    assert_in_step(batch, [first[0], late[1]])

    assert [len(tokens[r.request_id]) for r in first + late] == [9, 6, 3, 6]
    for req in first + late:
        got = tokens[req.request_id]
        assert got == greedy_reference(tiny_llama, tokenizer, req.generation.input_ids, len(got)), req.request_id

    batch.keep([])
    assert_empty(batch)
    batch.merge(*prefill(tiny_llama, requests(tokenizer, "Again")))  # an emptied batch takes rows afresh
    assert_in_step(batch, batch.rows) and len(batch) == 1
    batch.reset()
    assert_empty(batch)
