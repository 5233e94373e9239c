"""A worker's engine stays flat over many generations: no growth of caches, handles or bookkeeping."""

import collections
import ctypes
import gc

import psutil
import torch

from inference.engine import BatchEngine, GenerationRequest
from inference.output import RequestHandle, coalesce
from inference.request import Request
from inference.sampling import SamplingParams


def census() -> collections.Counter:
    """Live tensors, handles and requests in the process: what a leak per generation would multiply."""
    gc.collect()
    counts = collections.Counter()
    for obj in gc.get_objects():
        cls = type(obj)  # not isinstance: that reads __class__, which some lazy module objects warn about
        for kind in (torch.Tensor, RequestHandle, Request):
            if issubclass(cls, kind):
                counts[kind.__name__] += 1
    return counts


def test_engine_memory_stays_flat_over_a_thousand_generations(tiny_llama, tokenizer):
    # A small prefix cache, so that its inserting and evicting run thousands of times too.
    engine = BatchEngine(tiny_llama, tokenizer, max_batch_size=8, eos_ids=set(), prefix_cache_bytes=2**19).start()
    process = psutil.Process()

    def settled_rss() -> int:
        # Freed memory that glibc keeps in its arenas (per thread, and the engine's thread is one) would read
        # as growth; hand it back first, so what remains is memory still in use.
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return process.memory_info().rss

    def burst(n):
        handles = []
        for i in range(n):
            ids = tokenizer.encode(f"Memory check number {i}")  # distinct: each reply is a new cache entry
            handles.append(engine.submit(GenerationRequest(ids, SamplingParams(max_new_tokens=6))))
            if i % 3 == 0:
                handles[-1].cancel()  # cancels too must leave nothing behind
        for h in handles:
            list(coalesce(h, 0.001))

    try:
        burst(200)  # warm-up: allocator pools settle
        objects_before, before = census(), settled_rss()
        burst(1000)
        objects_after, after = census(), settled_rss()
    finally:
        engine.shutdown()
    assert engine.active == 0 and engine._batch.cache is None and not engine._cancelled and not len(engine._waiting)
    assert not engine._places and engine._waiting.served("") is None  # the fair queue forgot the idle key
    cache = engine.prefix_cache
    assert cache.stats.evicted > 100 and cache.bytes <= cache.budget_bytes and cache.stats.hits > 0
    # Each entry is one allocation of its own, freed whole on eviction (batching.state_block): as a tensor per
    # layer's key and value from malloc's heap, interleaved with the batch's short-lived tensors, the entries a
    # churning cache evicted left holes the heap kept, and a worker rose ~100-150 MiB past its warm-up.
    storages = {t.untyped_storage().data_ptr() for e in cache._entries.values() for kv in e.layers for t in kv}
    assert len(cache) > 1 and len(storages) == len(cache), (len(storages), len(cache))
    # Counted, not measured: a leak per generation would add a thousand of one of these. The prefix cache's
    # entries come and go within its budget, so its tensors may differ by a few dozen either way.
    assert objects_after["Tensor"] <= objects_before["Tensor"] + 64, (objects_before, objects_after)
    assert objects_after["RequestHandle"] <= 8 and objects_after["Request"] <= 8, objects_after
    # RSS as a backstop only: what glibc and torch keep cached varies by a few tens of MiB with what ran before
    # in the process (22 MiB seen in the full suite, 1-3 MiB alone), while a real leak of KV states would be far
    # more.
    assert after - before < 64 * 2**20, f"grew {(after - before) / 2**20:.1f} MiB over 1000 generations"


def test_kept_states_are_one_block_per_sequence_outside_the_malloc_heap():
    """The prefix cache's states (``row_states``) are one block per sequence, on the CPU an anonymous mapping of
    its own, so an evicted entry is handed back whole: none of them lands in malloc's heap, where a churning cache
    left holes the heap kept (a worker grew ~100-150 MiB past its warm-up: test_worker_memory)."""
    from transformers import DynamicCache

    from inference.batching import row_states

    layers, heads, width, dim = 6, 4, 64, 64
    cache = DynamicCache()
    for i in range(layers):
        cache.update(torch.randn(3, heads, width, dim), torch.randn(3, heads, width, dim), i)
    states = row_states(cache, 1, 25)
    assert len({t.untyped_storage().data_ptr() for kv in states for t in kv}) == 1  # one block, not 2 × layers
    assert all(k.shape == (1, heads, 25, dim) and k.is_contiguous() for kv in states for k in kv)
    assert torch.equal(states[4][1], cache.layers[4].values[1:2, :, -25:, :])

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
            + ("keepcost",)
        ]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    gc.collect()
    before = mallinfo2()
    kept = [row_states(cache, i % 3, 20 + i % 40) for i in range(100)]  # ~40 MiB of states, in pieces of 20-50 KiB
    after = mallinfo2()
    held = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for s in kept for k, v in s)
    assert held > 30 * 2**20
    # Counted in bytes malloc holds for live blocks (its heap and its own mappings): only the tensors' small
    # Python and C++ objects, not their states.
    grown = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd)
    assert grown < 4 * 2**20, f"malloc holds {grown / 2**20:.1f} MiB more for {held / 2**20:.0f} MiB of states"
