"""The left-padded batch the engine keeps, as tensors: how newcomers are grouped and laid out for prefill (from
their cached prefixes), and the running batch they join (``RunningBatch``).

Layout: every row's newest token sits in the same column, so one decode step is one forward pass over
``[B, 1]`` tokens with a ``[B, T]`` attention mask (1 for real tokens, 0 for padding) and explicit position ids
per row. Each row's padding is one block on its left — ``[pad][tokens]`` — an invariant every function here
keeps. The key/value cache is a ``GrowingCache`` (``kvcache.py``, a transformers ``DynamicCache``) whose per-layer
tensors are ``[B, heads, T, dim]``; they, and the mask, are views of allocations with spare columns (``kv.py``), so
a decode step writes its column in place instead of copying the batch.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from inference.kv import Growing, KVCounts
from inference.request import Request, RequestStatus

if TYPE_CHECKING:
    from inference.prefix_cache import PrefixEntry


class RunningBatch:
    """The rows being decoded, as five fields that describe the same rows in the same order: each row's request,
    the KV cache, the attention mask over it, the sampled token each row feeds next and that token's position.

    Only the methods here change them, and each changes all five together: ``merge`` admits prefilled rows,
    ``advance`` records a decode step, ``keep`` drops rows, ``reset`` empties the batch. A row's next position is
    the number of real tokens in its cache (``positions == mask.sum(-1)``). The engine's thread alone touches it;
    other threads only read ``rows``, which is replaced or extended, never left half-built.
    """

    def __init__(self, kv_counts: KVCounts | None = None):
        self.kv_counts = kv_counts if kv_counts is not None else KVCounts()  # the cache's reallocations, copies
        self.reset()

    def reset(self) -> None:
        """Empty the batch, releasing the KV cache."""
        self.rows: list[Request] = []  # the request of each row, in row order
        self.cache = None
        self._mask = Growing(-1, self.kv_counts)  # [B, T] 1 for real tokens, 0 for left padding
        self.next: torch.Tensor | None = None  # [B] sampled but not yet fed tokens
        self.positions: torch.Tensor | None = None  # [B] position id of each row's next token

    def __len__(self) -> int:
        return len(self.rows)

    def allocation(self) -> tuple[int, int]:
        """``(rows, columns)`` the cache's keys and values are allocated for now (``(0, 0)``: none, or a cache that
        does not say): what ``KVBudget.fits`` counts admissions against."""
        cache = self.cache
        return cache.allocation() if hasattr(cache, "allocation") else (0, 0)

    @property
    def mask(self) -> torch.Tensor | None:
        """``[B, T]``: 1 for real tokens, 0 for left padding (a view: its allocation has spare columns)."""
        return self._mask.view

    def merge(
        self, requests: list[Request], cache, mask: torch.Tensor, next_tokens: torch.Tensor, positions: torch.Tensor
    ) -> None:
        """Append prefilled rows (their own cache, mask, next tokens and positions), left-padding whichever side
        is shorter; their requests are running from now on."""
        for req in requests:
            req.status = RequestStatus.RUNNING
        if not self.rows:  # the newcomers' tensors become the batch's: no copy
            self.rows, self.cache = list(requests), cache
            self._mask.adopt(mask)
            if hasattr(cache, "count_into"):
                cache.count_into(self.kv_counts)
            self.next, self.positions = next_tokens, positions
            return
        merge(self.cache, self._mask, cache, mask)
        self.next = torch.cat([self.next, next_tokens])
        self.positions = torch.cat([self.positions, positions])
        self.rows.extend(requests)

    def decode_inputs(self) -> dict:
        """The model's arguments for one decode step: every row feeds its next token (the cache grows in place).
        The mask's new column is written into its spare room, taken in by ``advance``."""
        mask = self._mask.reserve(1)
        mask[:, -1].fill_(1)
        return {
            "input_ids": self.next.unsqueeze(-1),
            "attention_mask": mask,
            "position_ids": self.positions.unsqueeze(-1),
            "past_key_values": self.cache,
        }

    def advance(self, inputs: dict, next_tokens: torch.Tensor) -> None:
        """Record the decode step run on ``inputs`` (``decode_inputs``): each row's fed token is now in the cache,
        and ``next_tokens`` were sampled from its logits."""
        self._mask.extend(1)
        self.positions = self.positions + 1
        self.next = next_tokens

    def keep(self, indexes: list[int]) -> None:
        """Keep only the rows at ``indexes`` (ascending), freeing the others' cache; none left empties the batch."""
        if not indexes:
            self.reset()
            return
        index = torch.tensor(indexes, device=self.mask.device)
        self.rows = [self.rows[i] for i in indexes]
        self.next = self.next.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        keep_rows(self.cache, self._mask, indexes)


@dataclass(eq=False)
class Plan:
    """How one newcomer is prefilled: from which cached prefix entry, reusing how many of its tokens."""

    request: Request | None  # None for a prefix computed only to be cached
    prompt: list[int]
    entry: PrefixEntry | None = None
    reuse: int = 0

    @property
    def todo(self) -> int:
        return len(self.prompt) - self.reuse

    @property
    def warm(self) -> bool:
        """All but the last prompt token is cached: the row can join the batch without a prefill forward."""
        return self.todo == 1 and self.reuse > 0


def plan_groups(plans: list[Plan]) -> list[list[Plan]]:
    """Split newcomers into prefill forwards of similar work: every row of a forward computes as many tokens as
    its neediest one, so a warm request (a token or two left) must not wait behind a cold 2,000-token prompt.
    Least work first, so warm requests also get their first token first."""
    groups: list[list[Plan]] = []
    for plan in sorted(plans, key=lambda p: p.todo):
        if groups and plan.todo <= 2 * groups[-1][0].todo + 8:
            groups[-1].append(plan)
        else:
            groups.append([plan])
    return groups


def prefill_inputs(plans: list[Plan], model_config, pad_id: int, device):
    """Tensors for one prefill forward over ``plans``, each row starting from its cached prefix.

    Every row computes the same number of new tokens (the most any row needs); a row that needs fewer
    recomputes part of its cached prefix instead of padding, which costs the same and keeps its padding in one
    block on the left: ``[pad][cached past][new tokens]``. Returns ``ids [B, new]``, ``mask [B, T]``,
    ``positions [B, new]`` and a ``GrowingCache`` holding the cached pasts.
    """
    from inference.kvcache import GrowingCache

    new = max(p.todo for p in plans)
    past = [len(p.prompt) - min(len(p.prompt), new) for p in plans]  # ≤ p.reuse, since new ≥ p.todo
    width_past = max(past)
    ids = torch.full((len(plans), new), pad_id, dtype=torch.long)
    mask = torch.zeros((len(plans), width_past + new), dtype=torch.long)
    for i, plan in enumerate(plans):
        tail = plan.prompt[past[i] :]
        ids[i, new - len(tail) :] = torch.tensor(tail, dtype=torch.long)
        mask[i, width_past + new - len(plan.prompt) :] = 1  # the row's real tokens are its last len(prompt)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, width_past:]
    cache = GrowingCache(model_config)
    if width_past:
        template = next(plan.entry for plan, p in zip(plans, past) if p)
        for layer, (k0, v0) in enumerate(template.layers):
            ks, vs = [], []
            for plan, p in zip(plans, past):
                k = plan.entry.layers[layer][0][..., :p, :] if p else k0[..., :0, :]
                v = plan.entry.layers[layer][1][..., :p, :] if p else v0[..., :0, :]
                ks.append(left_pad(k, width_past - p, dim=-2))
                vs.append(left_pad(v, width_past - p, dim=-2))
            cache.update(torch.cat(ks), torch.cat(vs), layer)  # copies: the cached entry is never written to
    return ids, mask, positions, cache


def merge(cache, mask: Growing, new_cache, new_mask: torch.Tensor) -> None:
    """Append ``new_cache``'s rows to ``cache`` and ``new_mask``'s to ``mask`` (in place), left-padding whichever
    side is shorter. Growing layers take the rows into spare rows when they have them (``Growing.join``)."""
    old_t, new_t = mask.width, new_mask.shape[1]
    width = max(old_t, new_t)
    for old_layer, new_layer in zip(cache.layers, new_cache.layers):
        grown = getattr(old_layer, "grown", None)
        for i, attr in enumerate(("keys", "values")):
            if grown is not None:
                grown[i].join(getattr(new_layer, attr), width - old_t, width - new_t)
                continue
            a = left_pad(getattr(old_layer, attr), width - old_t, dim=-2)
            b = left_pad(getattr(new_layer, attr), width - new_t, dim=-2)
            setattr(old_layer, attr, torch.cat([a, b], dim=0))
    mask.join(new_mask, width - old_t, width - new_t)


def keep_rows(cache, mask: Growing, indexes: list[int]) -> None:
    """Keep only the rows at ``indexes`` (ascending, in place) and cut the columns that became padding in every
    remaining row — dead weight for attention."""
    index = torch.tensor(indexes, device=mask.view.device)
    first = int((mask.view.index_select(0, index).sum(0) > 0).nonzero()[0])
    for layer in cache.layers:
        grown = getattr(layer, "grown", None)
        if grown is not None:
            for g in grown:
                g.keep(indexes, first)
            continue
        layer.keys = layer.keys.index_select(0, index)[..., first:, :]
        layer.values = layer.values.index_select(0, index)[..., first:, :]
    mask.keep(indexes, first)


def row_states(cache, row: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A copy of one row's last ``length`` columns, per layer ``[1, heads, length, dim]`` (its real tokens).

    The copy is one block (``state_block``), each layer's key and value a view of it: what the prefix cache keeps
    for a sequence is one allocation, freed whole when the entry is evicted."""
    layers = cache.layers
    views = [
        (layer.keys[row : row + 1, :, -length:, :], layer.values[row : row + 1, :, -length:, :]) for layer in layers
    ]
    shapes = {(k.shape, k.dtype, k.device) for pair in views for k in pair}
    if len(shapes) != 1:  # layers of different shapes (not on the models served): one copy each
        return [(k.clone(), v.clone()) for k, v in views]
    ((shape, dtype, device),) = shapes
    block = state_block((len(views), 2, *shape), dtype, device)
    out = []
    for i, (k, v) in enumerate(views):
        block[i, 0].copy_(k)
        block[i, 1].copy_(v)
        out.append((block[i, 0], block[i, 1]))
    return out


def state_block(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor for states kept long (the prefix cache's). On the CPU, its own anonymous memory
    mapping, unmapped when the tensor is freed: as ~60 small tensors from malloc's heap, interleaved with the
    batch's short-lived ones, every evicted entry left holes the heap could neither fill nor return, and a
    worker's resident memory rose ~150 MiB over the cache's budget once the cache churned (test_worker_memory).
    Elsewhere (a GPU) the device's own allocator."""
    count = math.prod(shape)
    if torch.device(device).type != "cpu" or not count:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.frombuffer(mmap.mmap(-1, count * dtype.itemsize), dtype=dtype, count=count).view(shape)


def full_attention(model_config) -> bool:
    """Prefix caching needs every layer to keep every position (no sliding windows)."""
    from transformers import DynamicCache

    return not any(getattr(layer, "is_sliding", False) for layer in DynamicCache(config=model_config).layers)


def left_pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)
