"""The growing cache (``kv.py``, ``kvcache.py``): decode steps write into spare columns — the cache is reallocated
O(log N) times over N steps, not once per step per layer — rows leave and join in place, and the tokens stay
those of ``generate``. Counted (reallocations, bytes copied), never timed."""

import torch

from inference.batching import RunningBatch
from inference.engine import BatchEngine, GenerationRequest
from inference.kv import Growing
from inference.kvcache import GrowingCache, GrowingLayer
from inference.sampling import SamplingParams
from tests.inference.test_batching import assert_in_step, decode, prefill, requests
from tests.inference.test_engine import greedy_reference


def test_appending_columns_reallocates_geometrically_and_keeps_every_column():
    grown = Growing(-2)
    rows = [torch.randn(3, 2, 5, 4)]
    grown.append(rows[0])  # adopted, not copied
    assert grown.counts.reallocations == 0 and grown.view.data_ptr() == rows[0].data_ptr()
    for _ in range(1000):
        rows.append(torch.randn(3, 2, 1, 4))
        grown.append(rows[-1])
    assert torch.equal(grown.view, torch.cat(rows, dim=-2))
    # 1,005 columns from 5: each growth leaves half as much again spare, so about log1.5(1005 / 37) + 1 moves
    assert grown.counts.reallocations <= 10
    assert grown.buf.shape[-2] < 2 * grown.width  # and the spare room stays bounded


def test_an_adopted_tensor_is_never_written_to():
    outside = torch.zeros(2, 1, 3, 4)
    grown = Growing(-2)
    grown.adopt(outside)
    grown.append(torch.ones(2, 1, 1, 4))
    grown.keep([1], cut=0)
    grown.join(torch.ones(1, 1, 4, 4), 0, 0)
    assert not outside.any() and grown.view.shape == (2, 1, 4, 4)


def test_rows_leave_and_join_in_place_moving_only_the_rows_that_must_move():
    grown = Growing(-1)
    grown.append(torch.arange(4 * 6).view(4, 6))
    grown.append(torch.full((4, 1), -1))  # now in an allocation of its own, with spare columns
    assert grown.counts.reallocations == 1
    before = grown.counts.bytes_copied
    grown.keep([0, 2, 3], cut=2)  # row 1 leaves: rows 2 and 3 move up one; two columns are cut by moving a view
    assert grown.counts.reallocations == 1
    assert grown.counts.bytes_copied - before == 2 * 2 * 5 * 8  # 2 rows of 5 columns, gathered and written back
    assert grown.view.tolist() == [[2, 3, 4, 5, -1], [14, 15, 16, 17, -1], [20, 21, 22, 23, -1]]
    grown.join(torch.tensor([[7, 7, 7, 7, 7, 7]]), pad_self=1, pad_other=0)  # wider: the running rows get a pad
    assert grown.counts.reallocations == 1  # into the leaver's row, padding into the columns cut before
    assert grown.view.tolist()[0] == [0, 2, 3, 4, 5, -1] and grown.view.tolist()[3] == [7] * 6
    grown.join(torch.tensor([[8, 8]]), pad_self=0, pad_other=4)  # no spare row left: one move, both sides
    assert grown.counts.reallocations == 2
    assert grown.view.tolist()[4] == [0, 0, 0, 0, 8, 8] and grown.view.shape == (5, 6)


@torch.no_grad()
def test_a_growing_cache_decodes_as_generate_with_rows_leaving_and_joining_in_place(tiny_llama, tokenizer):
    batch = RunningBatch()
    first = requests(tokenizer, "Hello there", "What is the capital of France? Answer briefly.", "One two three")
    late = requests(tokenizer, "2+2=")
    tokens = {r.request_id: [] for r in first + late}
    new = prefill(tiny_llama, first)
    assert all(isinstance(layer, GrowingLayer) for layer in new[1].layers)
    batch.merge(*new)
    for req, token in zip(first, new[3].tolist()):
        tokens[req.request_id].append(token)
    decode(tiny_llama, batch, tokens, 40)
    filled = sum(t.nbytes for layer in batch.cache.layers for t in (layer.keys, layer.values))
    assert filled < batch.cache.allocated_bytes() <= 1.5 * filled + 2 * len(batch.cache.layers) * 3 * 2 * 32 * 16 * 4
    tensors = 2 * len(batch.cache.layers) + 1  # keys and values per layer, and the mask
    # the first step moves each tensor into its own allocation; 40 steps of ~10 columns need about 2 more each
    assert batch.kv_counts.reallocations <= 3 * tensors
    moved = batch.kv_counts.reallocations

    batch.keep([0, 2])  # the middle row leaves: no reallocation, one row moves up
    assert_in_step(batch, [first[0], first[2]])
    assert batch.kv_counts.reallocations == moved
    new = prefill(tiny_llama, late)  # narrower than the batch: it joins the freed row, padded on its left
    batch.merge(*new)
    tokens[late[0].request_id].append(new[3].item())
    assert_in_step(batch, [first[0], first[2], late[0]])
    assert batch.kv_counts.reallocations == moved
    decode(tiny_llama, batch, tokens, 5)

    for req in first + late:
        got = tokens[req.request_id]
        assert got == greedy_reference(tiny_llama, tokenizer, req.generation.input_ids, len(got)), req.request_id


def test_two_hundred_engine_steps_reallocate_the_cache_a_logarithmic_number_of_times(tiny_llama, tokenizer):
    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=4, eos_ids=set()).start()
    try:
        ids = tokenizer.encode("Tell me a story about a cat")
        handle = engine.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=200)))
        done = list(handle)[-1]
        stats = engine.stats()
    finally:
        engine.shutdown()
    assert done.completion_tokens == 200 and stats["decode_steps"] == 199
    tensors = 2 * tiny_llama.config.num_hidden_layers + 1
    # a DynamicCache copied every layer's keys and values every step: 199 × 4 here
    assert stats["kv_reallocations"] <= 12 * tensors
    expected = greedy_reference(tiny_llama, tokenizer, ids, 200)
    assert done.text == tokenizer.decode(expected, skip_special_tokens=True)


def test_cache_methods_of_transformers_adopt_what_they_assign(tiny_llama):
    cache = GrowingCache(tiny_llama.config)
    layer = cache.layers[0]
    layer.update(torch.randn(2, 2, 3, 16), torch.randn(2, 2, 3, 16))
    cache.batch_select_indices(torch.tensor([1]))  # assigns layer.keys = ...: adopted as is
    assert layer.keys.shape == (1, 2, 3, 16) and cache.get_seq_length() == 3
    layer.update(torch.randn(1, 2, 1, 16), torch.randn(1, 2, 1, 16))
    assert cache.get_seq_length() == 4
    cache.reset()
    assert layer.keys is None and cache.get_seq_length() == 0


def test_a_decode_step_concatenates_no_keys_or_values_any_more(tiny_llama, tokenizer):
    """Counted by the profiler (``python -m inference.stepprof``): the same rows, a step with the growing cache
    and a step with their states in transformers' ``DynamicCache``, which concatenates keys and values per layer."""
    from inference.stepprof import as_dynamic_cache, fill, profile

    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=2, eos_ids=set())
    with torch.no_grad():
        fill(engine, batch=2, context=20)
        growing = {name: calls for name, _, _, calls in profile(engine, steps=2, top=1000)["ops"]}
        as_dynamic_cache(engine)
        dynamic = {name: calls for name, _, _, calls in profile(engine, steps=2, top=1000)["ops"]}
    layers = tiny_llama.config.num_hidden_layers
    # keys and values, per layer (the mask grows in place in both: the batch keeps it, not the cache)
    assert dynamic["aten::cat"] - growing.get("aten::cat", 0) == 2 * layers
