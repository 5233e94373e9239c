"""Where a decode step's time goes: ``python -m inference.stepprof --batch 1,8 --context 300,1500``.

Fills a ``BatchEngine``'s running batch with ``batch`` rows of ``context`` random prompt tokens (one prefill,
no prefix cache, no thread), runs a few decode steps to warm up, then profiles ``--steps`` decode steps with
``torch.profiler`` and prints the operators that took the most time (self CPU time, summed over the steps), each
with its share of the total, and the mean wall time of a step. In-process and Django-free like ``bench``.

Each case is profiled twice on the same rows, one right after the other. ``--compare cache``: with the engine's
growing cache (``kvcache.py``), then with its states moved into a transformers ``DynamicCache`` (what the engine
kept before, which concatenates every layer every step); both with packed layers through transformers' forward
(before 2026-12-07's direct forward its figures were taken with torch's linear layers). ``--compare linears``:
with torch's own linear layers (MKL on the CPU), then with them packed for oneDNN (``onednn.py``), both through
transformers' forward. ``--compare direct`` (the default): packed, through transformers' forward, then through
``fused.forward`` (what a worker runs: ``CHAT_DECODE_DIRECT``). On a machine shared with other jobs only such
neighbouring figures compare.
"""

from __future__ import annotations

import argparse
import time

import torch

from inference import fused
from inference.detok import Detokenizer
from inference.engine import BatchEngine
from inference.output import RequestHandle
from inference.request import GenerationRequest, Request
from inference.sampling import SamplingParams


def fill(engine: BatchEngine, batch: int, context: int, seed: int = 0) -> None:
    """Prefill ``batch`` rows of ``context`` random tokens into the engine's running batch."""
    gen = torch.Generator().manual_seed(seed)
    vocab = engine.model.config.vocab_size
    requests = []
    for i in range(batch):
        ids = torch.randint(3, vocab, (context,), generator=gen).tolist()
        generation = GenerationRequest(ids, SamplingParams(max_new_tokens=10**6), request_id=f"p{i}")
        requests.append(Request(generation, RequestHandle(f"p{i}", engine=None), Detokenizer(engine.tokenizer, ())))
    for _ in engine._prefill(requests, None):  # no round budget: one forward
        pass


def as_dynamic_cache(engine: BatchEngine) -> None:
    """Move the running batch's states into a transformers ``DynamicCache`` (each layer copied once), the cache
    the engine kept before ``kvcache.py``."""
    from transformers import DynamicCache

    cache = DynamicCache(config=engine.model.config)
    for old, new in zip(engine._batch.cache.layers, cache.layers):
        new.lazy_initialization(old.keys, old.values)
        new.keys, new.values = old.keys.clone(), old.values.clone()
    engine._batch.cache = cache


def profile(engine: BatchEngine, steps: int, top: int) -> dict:
    """Profile ``steps`` decode steps of the engine's running batch: the top operators and the mean step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(3):  # warm up: lazy kernel setup, the allocator's first blocks
        engine._decode_step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            engine._decode_step()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "step_ms": 1000 * wall / steps,
        # the process's CPU time: on a machine shared with other jobs, steadier than the wall clock (with one
        # thread; with more, threads waiting for each other spin and count too)
        "cpu_ms": 1000 * cpu / steps,
        "ops_ms": total / steps / 1000,  # the rest of a step: Python (ours, transformers') and the profiler's own
        "ops": [
            (e.key, e.self_cpu_time_total / steps / 1000, e.self_cpu_time_total / total, e.count // steps)
            for e in events[:top]
        ],
    }


def main(argv=None) -> int:
    from inference.loading import BUNDLED, configure_threads, in_passing_thread, load_model
    from inference.onednn import pack_linears, unpack_linears

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=BUNDLED)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--context", default="300,1500")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compare", choices=("linears", "cache", "direct"), default="direct")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    torch.set_grad_enabled(False)
    loaded = load_model(args.model, packed=False)
    model = loaded.model
    if args.compare == "direct" and not fused.fusable(model):
        parser.error(f"--compare direct: {args.model} is not a Llama model the engine's own forward computes")
    for batch in [int(b) for b in args.batch.split(",")]:
        for context in [int(c) for c in args.context.split(",")]:
            engine = BatchEngine(model, loaded.tokenizer, max_batch_size=batch, eos_ids=set())
            fill(engine, batch, context)
            cases = {
                "cache": ("growing", "DynamicCache"),
                "linears": ("torch's linears", "packed linears"),
                "direct": ("transformers' forward", "direct forward"),
            }[args.compare]
            unpack_linears(model)
            if args.compare != "linears":
                in_passing_thread(pack_linears, model)  # what a worker runs
            for case in cases:
                if case == "DynamicCache":
                    as_dynamic_cache(engine)
                elif case == "packed linears":
                    in_passing_thread(pack_linears, model)
                engine.direct_decode = case == "direct forward"
                result = profile(engine, args.steps, args.top)
                print(
                    f"\n## batch {batch}, context {context}, {case}: {result['step_ms']:.1f} ms per decode step "
                    f"({result['cpu_ms']:.1f} ms CPU), {result['ops_ms']:.1f} ms of it in operators"
                )
                print(f"{'operator':<50} {'ms/step':>8} {'share':>6} {'calls/step':>10}")
                for name, ms, share, calls in result["ops"]:
                    print(f"{name:<50} {ms:>8.2f} {100 * share:>5.1f}% {calls:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
