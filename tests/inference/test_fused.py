"""The engine's own forward (inference/fused.py): a decode step through it, alone or with a chunk of a long
prompt, gives transformers' logits and caches (plain and oneDNN-packed layers, left-padded rows) with fewer
operators; the streams and the prompt write ``generate``'s greedy tokens, every chunk but a prompt's first fused
while replies decode (counted); transformers' forward is kept where the model's layout or an adapter rules it out."""

import copy

import pytest
import torch

from inference import fused, onednn
from inference.batching import Plan
from inference.engine import BatchEngine, GenerationRequest
from inference.output import Finished, Piece, RequestHandle
from inference.prefill import Chunked
from inference.request import Request
from inference.sampling import SamplingParams
from tests.helpers import tiny
from tests.inference.test_adapters import save_lora
from tests.inference.test_chunked_prefill import events, long_prompt, start_streams, text_of
from tests.inference.test_engine import greedy_reference
from tests.inference.test_onednn import packed_copy

# the model as loaded by a worker on a CPU (linear layers packed for oneDNN) and as plain torch layers
LAYERS = [
    "plain",
    pytest.param(
        "packed", marks=pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN linear operators")
    ),
]


def fused_engine(model, tokenizer, fuse: bool = True, **options) -> BatchEngine:
    """A started engine that fuses chunks and decodes through fused.py (neither if ``fuse`` is False), with small
    budgets: chunks of 16 a round, 8 while replies decode."""
    options = {"max_batch_size": 4, "prefill_chunk": 16, "prefill_chunk_decoding": 8, **options}
    return BatchEngine(model, tokenizer, eos_ids=set(), fuse_chunks=fuse, direct_decode=fuse, **options).start()


def padded_engine(model, tokenizer) -> BatchEngine:
    """An engine (no thread) whose running batch holds three prompts of different lengths: left padding."""
    engine = BatchEngine(model, tokenizer, max_batch_size=4, eos_ids=set(), prefill_chunk=16)
    rows = [long_prompt(tokenizer, n, salt=20 + n) for n in (20, 9, 14)]
    requests = [
        Request(GenerationRequest(r, SamplingParams()), RequestHandle(str(i), None), None) for i, r in enumerate(rows)
    ]
    with torch.no_grad():
        for _ in engine._prefill(requests, None):
            pass
    assert not bool(engine._batch.mask.all())
    return engine


def assert_same_states(got, want) -> None:
    for a, b in zip(got.layers, want.layers, strict=True):
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)


# Llama layouts the forward computes, each with random biases and norm weights (transformers starts them at 0 and
# 1, where a dropped bias or norm weight would go unseen): biases in attention and MLP, a head size other than
# hidden / heads with one key/value head, as many key/value heads as query heads, llama3 and yarn rotary scaling.
LAYOUTS = {
    "biases, head_dim 32, one kv head": {
        "attention_bias": True,
        "mlp_bias": True,
        "head_dim": 32,
        "num_key_value_heads": 1,
    },
    "multi-head, llama3 rope": {
        "num_key_value_heads": 4,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    },
    "yarn rope": {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}},
}


def llama(tokenizer, **layout):
    """A tiny random Llama of the given layout, its biases and norm weights random too."""
    model = tiny.tiny_llama(tokenizer, **layout)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.uniform_(0.5, 1.5) if "norm" in name else parameter.normal_(0, 0.1)
    return model


def one_step(model, tokenizer) -> tuple[torch.Tensor, torch.Tensor, object, object]:
    """One decode step of three left-padded rows through ``fused.forward`` and through the model itself (on a copy
    of the cache): both logits, both caches."""
    batch = padded_engine(model, tokenizer)._batch
    with torch.no_grad():
        twin = copy.deepcopy(batch.cache)
        inputs = batch.decode_inputs()
        logits = fused.forward(model, inputs)
        want = model(**dict(inputs, past_key_values=twin), use_cache=True).logits[:, -1]
    return logits, want, batch.cache, twin


@pytest.mark.parametrize("layers", LAYERS)
def test_a_decode_step_through_the_engines_forward_gives_transformers_logits_and_cache(tiny_llama, tokenizer, layers):
    model = packed_copy(tiny_llama) if layers == "packed" else tiny_llama
    logits, want, cache, twin = one_step(model, tokenizer)
    assert logits.shape == want.shape == (3, model.config.vocab_size)
    assert torch.allclose(logits, want, atol=1e-5, rtol=1e-4)
    assert_same_states(cache, twin)


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_llama_layout_it_takes_gives_transformers_logits(tokenizer, layout, layers):
    model = llama(tokenizer, **LAYOUTS[layout])
    assert fused.fusable(model)
    if layers == "packed":
        onednn.pack_linears(model)
    logits, want, cache, twin = one_step(model, tokenizer)
    assert torch.allclose(logits, want, atol=1e-5, rtol=1e-4), (logits - want).abs().max()
    assert_same_states(cache, twin)


def test_in_bfloat16_it_rounds_as_transformers_does(tokenizer):
    """No post-operations in bfloat16 (they would add to the product before its rounding, ~1 bfloat16 unit off):
    exactly transformers' logits, packed or not (the norms are transformers' own modules in bfloat16)."""
    model = llama(tokenizer, attention_bias=True, mlp_bias=True).to(torch.bfloat16)
    onednn.pack_linears(model)  # none where the CPU has no bfloat16 instructions
    logits, want, _, _ = one_step(model, tokenizer)
    assert logits.dtype == torch.bfloat16 and torch.equal(logits, want)


def test_models_it_does_not_compute_keep_transformers_forward(tiny_gpt2, tokenizer):
    assert not fused.fusable(llama(tokenizer, hidden_act="gelu")) and not fused.fusable(tiny_gpt2)
    assert not fused.fusable(llama(tokenizer, rope_scaling={"rope_type": "dynamic", "factor": 2.0}))
    gpt2 = BatchEngine(tiny_gpt2, tokenizer, eos_ids=set(), fuse_chunks=True, direct_decode=True)
    assert not gpt2.fuse_chunks and not gpt2.direct_decode


@pytest.mark.skipif(not onednn.available(), reason="this torch has no oneDNN linear operators")
def test_a_direct_decode_step_is_one_onednn_product_per_layer_and_fewer_operators(tiny_llama, tokenizer):
    """Counted with the profiler on a packed model: the step's 15 products (7 a layer and the head) are its only
    oneDNN calls and carry the MLP's activation and product and both residual additions with them: no ``silu``,
    and of the additions only the rotary embedding's two a layer and one outside the layers are left. In all the
    step runs fewer operators than through transformers' modules."""
    from torch.profiler import ProfilerActivity, profile

    from inference.stepprof import fill

    def step_ops(direct: bool) -> dict:
        engine = BatchEngine(packed_copy(tiny_llama), tokenizer, max_batch_size=4, eos_ids=set())
        engine.direct_decode = direct
        with torch.no_grad():
            fill(engine, 4, 20)
            engine._decode_step()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                engine._decode_step()
        return {e.key: e.count for e in prof.key_averages()}

    direct, transformers = step_ops(True), step_ops(False)
    assert direct["mkldnn::_linear_pointwise"] == transformers["mkldnn::_linear_pointwise"] == 15
    assert "aten::silu" not in direct and "aten::silu" in transformers
    assert direct["aten::add"] == 2 * 2 + 1 < transformers["aten::add"]

    def total(ops: dict) -> int:
        return sum(n for key, n in ops.items() if key.startswith(("aten::", "mkldnn::")))

    assert total(direct) < 0.85 * total(transformers), (total(direct), total(transformers))


@pytest.mark.parametrize("layers", LAYERS)
def test_the_fused_forward_gives_the_two_forwards_logits_and_caches(tiny_llama, tokenizer, layers):
    model = packed_copy(tiny_llama) if layers == "packed" else tiny_llama
    engine = padded_engine(model, tokenizer)
    with torch.no_grad():
        prompt = long_prompt(tokenizer, 40, salt=1)
        chunked = Chunked(Plan(None, prompt))
        chunked.inputs(16, model.config, 0, "cpu")  # a first chunk's inputs: its cache starts empty …
        ids, mask, positions, cache = chunked.inputs(16, model.config, 0, "cpu")
        model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        chunked.done = 16  # … and holds 16 tokens now
        batch = engine._batch
        twin_batch_cache, twin_chunk_cache = copy.deepcopy(batch.cache), copy.deepcopy(chunked.cache)

        inputs = batch.decode_inputs()
        ids, mask, positions, cache = chunked.inputs(16, model.config, 0, "cpu")
        logits = fused.forward(model, inputs, ids, positions, cache)

        plain = dict(inputs, past_key_values=twin_batch_cache)
        want_decode = model(**plain, use_cache=True).logits[:, -1]
        want_chunk = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=twin_chunk_cache
        ).logits[:, -1]
    assert logits.shape == (4, model.config.vocab_size)
    assert torch.allclose(logits[:3], want_decode, atol=1e-5) and torch.allclose(logits[3:], want_chunk, atol=1e-5)
    assert_same_states(batch.cache, twin_batch_cache)
    assert_same_states(cache, twin_chunk_cache)


def test_streams_and_a_long_prompt_in_fused_chunks_write_what_generate_writes(tiny_llama, tokenizer):
    engine = fused_engine(tiny_llama, tokenizer, max_batch_size=8, prefill_chunk=32)
    try:
        running = start_streams(engine, tokenizer, 4, 60, name="Stream {i} of the sea")
        streams = [tokenizer.encode(f"Stream {i} of the sea") for i in range(4)]
        prompt = long_prompt(tokenizer, 100, salt=3)
        late = text_of(events(engine.submit(GenerationRequest(prompt, SamplingParams(max_new_tokens=12)))))
        texts = [text_of([e for e in events(h)]) for h in running]
        counts = engine.counts
    finally:
        engine.shutdown()
    reference = [greedy_reference(tiny_llama, tokenizer, p, n) for p, n in [(prompt, 12)] + [(s, 60) for s in streams]]
    want = [tokenizer.decode(r, skip_special_tokens=True) for r in reference]
    assert [late] + texts == want
    # chunks of 8 while the streams decode: its first (taken as a newcomer) in a forward of its own, the other
    # twelve (92 tokens) each in a decode step's forward; every other step through fused.py's forward too
    assert counts.chunks == 1 + 12 and counts.fused == 12
    assert counts.direct == counts.steps - counts.fused > 0


def test_a_prompt_stopped_between_fused_chunks_ends_cancelled_and_the_streams_go_on(tiny_llama, tokenizer):
    """A prompt stopped while its chunks are pending ends cancelled; the running rows go on (one forward each)."""
    engine = fused_engine(tiny_llama, tokenizer, prefill_chunk_decoding=4)
    try:
        running = engine.submit(GenerationRequest(tokenizer.encode("Stream"), SamplingParams(max_new_tokens=200)))
        assert isinstance(running.get(timeout=30), Piece)
        doomed = engine.submit(GenerationRequest(long_prompt(tokenizer, 400, salt=4), SamplingParams(max_new_tokens=5)))
        while engine.counts.fused < 3:
            assert running.get(timeout=30)
        engine.cancel(doomed.request_id)
        assert events(doomed)[-1].reason == "cancelled"
        assert isinstance(running.get(timeout=30), Piece)  # still streaming
        engine.cancel(running.request_id)
        assert isinstance(events(running)[-1], Finished)
    finally:
        engine.shutdown()


def test_with_an_adapter_loaded_the_chunks_and_steps_keep_transformers_forward(tiny_llama, tokenizer, tmp_path):
    assert fused.fusable(tiny_llama)
    model = copy.deepcopy(tiny_llama)
    adapter = save_lora(tiny_llama, tmp_path / "a", seed=1)
    engine = fused_engine(model, tokenizer)
    try:  # an adapter row running: peft's layers would add its LoRA products to every fused row
        running = engine.submit(
            GenerationRequest(tokenizer.encode("Stream"), SamplingParams(max_new_tokens=40), adapter=adapter)
        )
        assert isinstance(running.get(timeout=30), Piece)
        prompt = long_prompt(tokenizer, 60, salt=5)
        late = text_of(events(engine.submit(GenerationRequest(prompt, SamplingParams(max_new_tokens=6)))))
        events(running)
        assert engine.counts.chunks > 1 and engine.counts.fused == 0 and engine.counts.direct == 0
    finally:
        engine.shutdown()
    assert late == tokenizer.decode(greedy_reference(tiny_llama, tokenizer, prompt, 6), skip_special_tokens=True)


def test_a_seeded_prompt_in_fused_chunks_samples_what_it_samples_in_chunks_of_their_own(tiny_llama, tokenizer):
    """The same seeded request behind the same streams, fused and not: the same tokens (the logits differ only in
    the order of float additions, the random numbers drawn are the same ones). At a low temperature: the tiny
    random model's distribution at 1.0 is nearly flat over 49,152 tokens, where the float rounding of the
    cumulative sum alone moves a draw to the next token (measured: 23,898 against 23,897)."""
    prompt = long_prompt(tokenizer, 90, salt=7)

    def sampled(fuse: bool) -> tuple[str, int]:
        engine = fused_engine(tiny_llama, tokenizer, fuse, prefill_chunk=32)
        try:
            running = engine.submit(GenerationRequest(tokenizer.encode("Stream"), SamplingParams(max_new_tokens=80)))
            assert isinstance(running.get(timeout=30), Piece)
            params = SamplingParams(max_new_tokens=20, temperature=0.05, seed=11)
            text = text_of(events(engine.submit(GenerationRequest(prompt, params))))
            events(running)
            return text, engine.counts.fused
        finally:
            engine.shutdown()

    (fused_text, fused_chunks), (plain_text, plain_fused) = sampled(True), sampled(False)
    assert fused_chunks > 0 and plain_fused == 0
    assert fused_text == plain_text and fused_text
    greedy = tokenizer.decode(greedy_reference(tiny_llama, tokenizer, prompt, 20), skip_special_tokens=True)
    assert fused_text != greedy  # it sampled


def test_a_pending_chunk_is_run_only_for_its_own_prompt_and_never_past_its_end(tiny_llama, tokenizer):
    """The round's chunk is planned before newcomers are taken: if its prompt was stopped meanwhile and another
    long prompt started in chunks, the plan is not applied to that one; and it never computes past a prompt's
    end (the last chunk's row joins the batch with its first token)."""

    def request(ids, name):
        return Request(GenerationRequest(ids, SamplingParams(max_new_tokens=50)), RequestHandle(name, None), None)

    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=4, eos_ids=set(), prefill_chunk=16, fuse_chunks=True)
    with torch.no_grad():
        for _ in engine._prefill([request(long_prompt(tokenizer, 12, salt=30), "running")], None):
            pass
        stopped, other = (
            request(long_prompt(tokenizer, 40, salt=31), "a"),
            request(long_prompt(tokenizer, 40, salt=32), "b"),
        )
        engine._chunked = Chunked(Plan(other, other.prefill_ids))
        engine._chunk(8)  # its first chunk, as a newcomer's
        engine._chunk_pending = (stopped, 16)  # planned for the prompt stopped since
        requests, _ = engine._decode_step()
        assert engine.counts.fused == 0 and engine._chunked.done == 8 and len(requests) == 1
        engine._chunk_pending = (other, 1000)
        requests, tokens = engine._decode_step()
    assert engine.counts.fused == 1 and engine._chunked is None  # its 32 tokens left, not 1,000
    assert requests[-1] is other and len(tokens) == 2 and engine._batch.positions.tolist()[-1] == 40


def test_the_step_profiler_refuses_to_compare_the_direct_forward_on_a_model_it_does_not_compute(
    tiny_gpt2, plain_tokenizer, tmp_path, capsys
):
    """``stepprof --compare direct`` (its default) on a model ``fusable`` refuses: a sentence, not a traceback
    from inside the forward (the engine itself keeps transformers' forward for such a model)."""
    from inference import stepprof

    tiny_gpt2.save_pretrained(tmp_path)
    plain_tokenizer.save_pretrained(tmp_path)
    # torch.enable_grad() puts back the grad mode on its way out: the tool turns gradients off for its process.
    with torch.enable_grad(), pytest.raises(SystemExit) as exit:
        stepprof.main(["--model", str(tmp_path), "--batch", "1", "--context", "8", "--steps", "1"])
    assert torch.is_grad_enabled()
    assert exit.value.code == 2
    assert "is not a Llama model the engine's own forward computes" in capsys.readouterr().err
