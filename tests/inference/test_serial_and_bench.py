"""The one-at-a-time comparison engine and the benchmark's measuring functions, on a tiny random model."""

import pytest

from inference.bench import bandwidth, bench_engine, bench_generate, static_row
from inference.bench_report import table
from inference.engine import BatchEngine, GenerationRequest
from inference.output import Piece
from inference.sampling import SamplingParams
from inference.serial import SerialEngine


def test_serial_engine_gives_the_batch_engines_greedy_text_and_can_be_cancelled(tiny_llama, tokenizer):
    ids = tokenizer.encode("Hello there")
    serial = SerialEngine(tiny_llama, tokenizer, eos_ids=set())
    batch = BatchEngine(tiny_llama, tokenizer, eos_ids=set()).start()
    try:
        a = list(serial.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=10))))[-1]
        b = list(batch.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=10))))[-1]
        long = serial.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=400)))
        assert isinstance(long.get(timeout=30), Piece)
        long.cancel()
        cancelled = list(long)[-1]
    finally:
        serial.shutdown()
        batch.shutdown()
    assert a.text == b.text and a.completion_tokens == b.completion_tokens == 10 and a.reason == "length"
    assert cancelled.reason == "cancelled" and cancelled.completion_tokens < 400


def test_bench_measures_every_level_with_exact_token_counts(tiny_llama, tokenizer):
    ids = tokenizer.encode("Benchmark prompt")
    raw = bench_generate(tiny_llama, tokenizer, ids, 6, repeats=1)
    assert raw["tokens_per_s"] > 0 and raw["ttft_ms"] > 0
    static = static_row(bench_generate(tiny_llama, tokenizer, ids, 6, repeats=1, rows=3), 3)
    assert static["concurrency"] == 3
    assert static["aggregate_tokens_per_s"] == pytest.approx(3 * static["per_stream_tokens_per_s"])  # float rounding
    engine = BatchEngine(tiny_llama, tokenizer, eos_ids=set()).start()
    try:
        rows = [bench_engine(engine, [ids] * c, 6) for c in (1, 3)]
    finally:
        engine.shutdown()
    assert [r["concurrency"] for r in rows] == [1, 3]
    assert all(r["ttft_p50_ms"] <= r["ttft_p95_ms"] for r in rows)
    rows[0].update(bandwidth(tiny_llama, rows[0], len(ids), 6))
    assert rows[0]["bytes_per_step"] > sum(p.numel() * 4 for p in tiny_llama.parameters())
    report = {
        "machine": {},
        "model": "tiny",
        "device": "cpu",
        "dtype": "float32",
        "prompt_tokens": len(ids),
        "tokens": 6,
        "raw_generate": raw,
        "engine": rows,
        "static_batch": [static],
        "engine_no_cache": rows,
    }
    assert "| engine | 3 |" in table(report) and "| static_batch | 3 |" in table(report)
    ratio = rows[1]["aggregate_tokens_per_s"] / static["aggregate_tokens_per_s"]
    assert f"engine_no_cache ÷ static_batch at 3: {ratio:.2f}" in table(report)


def test_serial_and_batch_engines_end_a_stop_string_reply_alike(tiny_gpt2, plain_tokenizer):
    # Both end requests through Request.accept: generate hands the streamer one more token after the one that
    # met the stop string, and it must not be counted.
    ids = plain_tokenizer.encode("Hello there")
    serial = SerialEngine(tiny_gpt2, plain_tokenizer, eos_ids=set())
    batch = BatchEngine(tiny_gpt2, plain_tokenizer, eos_ids=set()).start()
    try:
        free = list(batch.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=20))))[-1]
        words = free.text.split()
        stop = next((w for w in words if w != words[0]), words[-1])  # a random model repeats itself: skip that
        ended = [
            list(engine.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=20), stop_strings=(stop,))))[-1]
            for engine in (serial, batch)
        ]
    finally:
        serial.shutdown()
        batch.shutdown()
    a, b = ended
    assert a.reason == b.reason == "stop" and a.text == b.text == free.text[: free.text.index(stop)]
    assert a.completion_tokens == b.completion_tokens < 20
    assert a.text  # the stop string came after some text, as in a real reply
