"""The running batch's key/value memory, kept within a budget: a request is admitted only when the batch, with
it, would still fit at its largest; the rest wait their turn (and are told their place).

What a row can cost is known at admission: its prompt plus the most tokens it may still write (``max_new_tokens``,
within the context window), times the bytes one token's keys and values take over all layers. The batch is
left-padded (``batching.py``), so every row is as wide as the widest: the batch's cost at its largest is its
row count times its widest reservation. That bound is what is checked, so the cache never outgrows the budget
whatever the replies do — a reply ending early only frees memory sooner.

The cache grows in place (``kv.py``): its allocation has spare columns (up to half the filled width again, at
least ``MIN_SPARE``) and keeps the rows of replies that ended until a quarter of its rows remain. Both are
counted: the check prices the rows allocated (when more than the rows held) at the width the allocation can
grow to, so what the worker really holds — ``GrowingCache.allocated_bytes``, ``stats()["kv_bytes"]`` — stays
within the budget, not only what the rows fill.

A request whose reservation alone passes the budget still runs, alone, when the batch is empty: refusing it would
refuse a reply the operator's context window allows; the budget's job is to stop the batch *growing* past it.
Not counted: the prefix cache (its own budget, ``prefix_cache.py``), and the moment a prefill's rows join the
batch by a new allocation, when the old rows and the joined copy are both held.
"""

from __future__ import annotations

from collections.abc import Iterable

from inference.kv import MIN_SPARE
from inference.request import Request


def token_bytes(model_config, dtype_size: int) -> int:
    """Bytes one token's keys and values take in the cache, over all layers."""
    text = getattr(model_config, "text_config", None) or model_config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return text.num_hidden_layers * 2 * kv_heads * head_dim * dtype_size


def grown_width(width: int) -> int:
    """The columns an allocation made for ``width`` filled ones holds (``kv.Growing._reallocate``)."""
    return width + max(width // 2, MIN_SPARE)


def cache_bytes(cache) -> int:
    """The memory a cache's keys and values hold now: a growing cache's whole allocation (spare room included),
    another's tensors (padding included)."""
    if cache is None:
        return 0
    if hasattr(cache, "allocated_bytes"):
        return cache.allocated_bytes()
    total = 0
    for layer in cache.layers:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    return total


class KVBudget:
    """Admission by memory: ``fits(holding, newcomer)`` says whether a newcomer may join the rows held."""

    def __init__(self, budget_bytes: int, token_bytes: int, context_window: int):
        self.budget_bytes = budget_bytes
        self.token_bytes = token_bytes
        self.context_window = context_window

    def reserve(self, req: Request) -> int:
        """The most tokens the request's row can hold: its prompt and every token it may still write."""
        return min(self.context_window, len(req.generation.input_ids) + req.generation.params.max_new_tokens)

    def fits(self, holding: Iterable[Request], newcomer: Request, allocation: tuple[int, int] = (0, 0)) -> bool:
        """Whether ``newcomer`` may join ``holding`` (the rows running, prefilling or admitted this round), the
        running batch's cache being allocated ``(rows, columns)`` now. Always, with no budget or nothing held (a
        request runs alone rather than never)."""
        held = list(holding)
        if self.budget_bytes <= 0 or not held:
            return True
        rows = max(len(held) + 1, allocation[0])
        columns = max(grown_width(max(self.reserve(r) for r in [*held, newcomer])), allocation[1])
        return rows * columns * self.token_bytes <= self.budget_bytes
