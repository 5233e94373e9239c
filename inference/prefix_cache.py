"""A prefix cache: key/value states of token sequences already computed, reused by prompts that start the same.

Chat prompts share long beginnings: every conversation starts with the same system prompt, turn N+1 repeats
turn N's prompt and reply, a regenerate repeats its prompt exactly, and people who arrive together often send
the same starter. Prefill is the expensive, compute-bound part of time to first token, so the engine looks up
the longest cached prefix of each new prompt and computes only the rest (vLLM calls this automatic prefix
caching, SGLang RadixAttention).

Entries are whole sequences — one ``[1, kv_heads, length, head_dim]`` key and value tensor per layer, on the
model's device — indexed by a hash chain over their tokens, so any prefix of an entry can be found in one pass
over the prompt. Entries are evicted least recently used first when their bytes pass the budget. Keys were
computed at absolute positions 0..length-1 (RoPE is applied before caching), which stays true wherever the
engine places them in a left-padded batch row, since each row's positions count from its first real token.
Only the engine's thread touches the cache, so it has no lock.

States depend on the weights that computed them: rows that take an adapter (``adapters.py``) keep theirs in the
adapter's own *space* (``space``: the adapter; None: the base model), and a lookup finds only entries of its own
space, so one adapter's cached prompt never serves another's or the base's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch


@dataclass
class PrefixEntry:
    tokens: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    nbytes: int
    hashes: list[int] = field(default_factory=list, repr=False)
    space: Hashable = None


@dataclass
class PrefixStats:
    lookups: int = 0
    hits: int = 0
    tokens_looked_up: int = 0
    tokens_reused: int = 0
    inserted: int = 0
    evicted: int = 0


def _chain(tokens, space: Hashable = None) -> list[int]:
    """hash of every prefix in ``space``: ``out[i]`` stands for ``tokens[:i + 1]`` (the base's chain starts at 0,
    an adapter's at its own hash, so the spaces' keys differ)."""
    out, h = [], 0 if space is None else hash(space)
    for t in tokens:
        h = hash((h, t))
        out.append(h)
    return out


class PrefixCache:
    def __init__(self, budget_bytes: int, min_tokens: int = 4):
        self.budget_bytes = budget_bytes
        self.min_tokens = min_tokens  # shorter matches are not worth a copy
        self.bytes = 0
        self.stats = PrefixStats()
        self._entries: OrderedDict[int, PrefixEntry] = OrderedDict()  # id → entry, least recently used first
        self._index: dict[int, dict[int, None]] = {}  # prefix hash → ids of entries holding that prefix

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, tokens, *, count: bool = True, space: Hashable = None) -> tuple[PrefixEntry | None, int]:
        """The entry of ``space`` holding the longest prefix of ``tokens``, and that prefix's length (0: none)."""
        entry, n = self._match(tokens, _chain(tokens, space), space)
        if count:
            self.stats.lookups += 1
            self.stats.tokens_looked_up += len(tokens)
            if entry is not None:
                self.stats.hits += 1
                self.stats.tokens_reused += n
        if entry is not None:
            self._entries.move_to_end(id(entry))
        return entry, n

    def insert(
        self, tokens, states: Callable[[], list[tuple[torch.Tensor, torch.Tensor]]], *, space: Hashable = None
    ) -> None:
        """Remember the states of ``tokens`` in ``space``: ``states()`` gives, per layer, key and value
        ``[1, heads, len(tokens), dim]``. It is called only when they are kept — copying them out of the batch is
        the expensive part, and a sequence already held is not copied again."""
        tokens = tuple(tokens)
        if len(tokens) < self.min_tokens:
            return
        hashes = _chain(tokens, space)
        held, n = self._match(tokens, hashes, space)
        if held is not None and n == len(tokens):
            self._entries.move_to_end(id(held))
            return  # already held, as this sequence or the start of a longer one
        layers = states()
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if nbytes > self.budget_bytes:
            return
        if held is not None and n == len(held.tokens):
            self._remove(id(held))  # the new entry extends it: the old one is redundant
        entry = PrefixEntry(tokens, layers, nbytes, hashes, space)
        self._entries[id(entry)] = entry
        for h in hashes:
            self._index.setdefault(h, {})[id(entry)] = None
        self.bytes += nbytes
        self.stats.inserted += 1
        while self.bytes > self.budget_bytes and self._entries:
            self._remove(next(iter(self._entries)))
            self.stats.evicted += 1

    def discard(self, space: Hashable) -> None:
        """Forget every entry of ``space`` (an adapter unloaded: its states would only take room)."""
        for key in [k for k, e in self._entries.items() if e.space == space]:
            self._remove(key)

    def _match(self, tokens, hashes: list[int], space: Hashable) -> tuple[PrefixEntry | None, int]:
        best_id, best_len = None, 0
        for i, h in enumerate(hashes):
            ids = self._index.get(h)
            if not ids:
                break  # no entry holds tokens[:i + 1], so none holds anything longer
            best_id, best_len = next(reversed(ids)), i + 1
        entry = self._entries.get(best_id) if best_id is not None else None
        # A hash collision must not hand out another sequence's (or another space's) states: check them.
        if (
            entry is None
            or best_len < self.min_tokens
            or entry.space != space
            or tuple(tokens[:best_len]) != entry.tokens[:best_len]
        ):
            return None, 0
        return entry, best_len

    def _remove(self, key: int) -> None:
        entry = self._entries.pop(key)
        for h in entry.hashes:
            ids = self._index.get(h)
            if ids is not None:
                ids.pop(key, None)
                if not ids:
                    del self._index[h]
        self.bytes -= entry.nbytes
