"""One OpenAI streaming client for the peers benchmark (``python -m chatsite.bench_peers``).

The same client, the same request and the same arithmetic for every server compared — llama.cpp's
``llama-server``, ``transformers serve`` and this project's ``/v1`` — so the table compares servers, not clients.
It is the ``openai`` package (pinned in requirements-test.txt; the benchmark is run from a checkout with the test
requirements), one ``AsyncOpenAI`` per API key, every stream of a level opened at once.

Per stream: time to first token is from sending the request to the first chunk that carries content (a role-only
first chunk is not a token); tokens are the usage chunk's ``completion_tokens`` (``stream_options.include_usage``),
or the content chunks counted where a server sends no usage (the row then says so); per-stream tokens/s is the
tokens after the first over the time after the first. Per level: aggregate tokens/s is every stream's tokens over
the wall time from the first request sent to the last stream ended.

Django-free (``inference`` never imports Django), so the stack's part stays in ``chatsite.bench_peers``.
"""

from __future__ import annotations

import asyncio
import statistics
import time


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, for every benchmark (``inference.bench`` takes it from here: this module does
    not load torch)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def stream_one(client, model: str, content: str, tokens: int, extra_body: dict | None = None) -> dict:
    """One streamed chat completion, greedy, ``tokens`` new tokens at most; what the client saw, with times."""
    sent = time.perf_counter()
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        stream=True,
        max_tokens=tokens,
        temperature=0,
        stream_options={"include_usage": True},
        extra_body=extra_body or None,
    )
    first, chunks, usage, text = None, 0, None, []
    async for chunk in stream:  # ends with the server's [DONE] or when it closes the stream
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            chunks += 1
            text.append(chunk.choices[0].delta.content)
    end = time.perf_counter()
    if first is None:
        raise RuntimeError(f"{model}: a stream ended without any content")
    return {
        "sent": sent,
        "first": first,
        "end": end,
        "chunks": chunks,
        "tokens": usage.completion_tokens if usage else chunks,
        "counted": "usage" if usage else "chunks",
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "text": "".join(text),
    }


def summarize(runs: list[dict], start: float) -> dict:
    """A level's figures from its streams (``stream_one``'s records) and the moment the first was sent."""
    wall = max(r["end"] for r in runs) - start
    ttfts = [(r["first"] - r["sent"]) * 1000 for r in runs]
    prompt = [r["prompt_tokens"] for r in runs if r["prompt_tokens"] is not None]
    return {
        "concurrency": len(runs),
        "aggregate_tokens_per_s": sum(r["tokens"] for r in runs) / wall,
        "per_stream_tokens_per_s": statistics.median(
            (r["tokens"] - 1) / (r["end"] - r["first"]) if r["end"] > r["first"] else 0.0 for r in runs
        ),
        "ttft_p50_ms": percentile(ttfts, 0.5),
        "ttft_p95_ms": percentile(ttfts, 0.95),
        "wall_s": wall,
        "tokens_min": min(r["tokens"] for r in runs),
        "tokens_max": max(r["tokens"] for r in runs),
        "counted_by": sorted({r["counted"] for r in runs}),
        "prompt_tokens": statistics.median(prompt) if prompt else None,
        "chunks_per_stream": statistics.median(r["chunks"] for r in runs),
        "streams_with_usage": sum(r["counted"] == "usage" for r in runs),  # the server's own count came
    }


async def _level(base_url, keys, model, prompts, tokens, extra_body, timeout_s) -> dict:
    from openai import AsyncOpenAI

    # One client per key (the project's /v1 wants one key per user); no retries, so a failure shows; its own
    # timeout later than the level's, so a slow level ends as a TimeoutError the caller can record.
    clients = [AsyncOpenAI(base_url=base_url, api_key=k, max_retries=0, timeout=timeout_s + 30) for k in keys]
    try:
        start = time.perf_counter()
        runs = await asyncio.wait_for(
            asyncio.gather(
                *(stream_one(clients[i % len(clients)], model, p, tokens, extra_body) for i, p in enumerate(prompts))
            ),
            timeout_s,
        )
        return summarize(list(runs), start)
    finally:
        for c in clients:
            await c.close()


def measure(
    base_url: str,
    keys: list[str],
    model: str,
    prompts: list[str],
    tokens: int,
    extra_body: dict | None = None,
    timeout_s: float = 600,
) -> dict:
    """One level: every prompt streamed at once (stream *i* with key ``keys[i % len(keys)]``), bounded by
    ``timeout_s`` for the whole level."""
    return asyncio.run(_level(base_url, keys, model, prompts, tokens, extra_body, timeout_s))
