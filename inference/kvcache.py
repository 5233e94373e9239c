"""The transformers side of the growing cache (``kv.py``): a ``DynamicCache`` whose full-attention layers keep
their keys and values in ``Growing`` tensors.

Apart from this module, ``inference`` imports transformers only where it needs it (loading a model costs ~0.6 s
of imports); ``batching.py`` imports this lazily like it did ``DynamicCache``.

How the model reads it: ``layer.keys``/``values`` are views of the filled part, not contiguous (their rows and
heads stride over the spare columns). transformers' SDPA path (``integrations/sdpa_attention.py``) hands them to
``scaled_dot_product_attention`` as they are: for a decode step on the CPU (one query token, a mask) it packs the
query heads per key/value head (``pack_gqa``) instead of repeating the keys (``repeat_kv``, a copy), and the
CPU's flash kernel takes strided keys without copying them (the profile shows no ``aten::contiguous``/``clone``
after the change). A prefill (many query tokens) still repeats keys and values per query head — one copy of
the keys per forward, as before.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from inference.kv import Growing, KVCounts


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``update`` writes into spare columns instead of concatenating. Assigning
    ``keys``/``values`` (as ``batching.py`` and transformers' own cache methods do) adopts the tensor."""

    def __init__(self, counts: KVCounts | None = None, **kwargs):
        self._keys = Growing(-2, counts)
        self._values = Growing(-2, counts)
        super().__init__(**kwargs)

    @property
    def keys(self) -> torch.Tensor | None:
        return self._keys.view

    @keys.setter
    def keys(self, t: torch.Tensor | None) -> None:
        self._keys.adopt(t)

    @property
    def values(self) -> torch.Tensor | None:
        return self._values.view

    @values.setter
    def values(self, t: torch.Tensor | None) -> None:
        self._values.adopt(t)

    @property
    def grown(self) -> tuple[Growing, Growing]:
        return self._keys, self._values

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True  # the first update adopts its states: nothing to allocate before

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._keys.append(key_states)
        self._values.append(value_states)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._keys.width if self.is_initialized else 0


class GrowingCache(DynamicCache):
    """``DynamicCache(config=...)`` with ``GrowingLayer`` for each plain full-attention layer (sliding-window and
    other special layers stay transformers' own: the prefix cache and the engine's merges already refuse or copy
    them as before)."""

    def __init__(self, config, counts: KVCounts | None = None):
        super().__init__(config=config)
        self.counts = counts if counts is not None else KVCounts()
        self.layers = [GrowingLayer(self.counts) if type(layer) is DynamicLayer else layer for layer in self.layers]

    def allocated_bytes(self) -> int:
        """The memory the growing layers hold, spare rows and columns included (at most about 1.5× what their
        states fill, more only while rows that left are not yet given back: ``Growing.keep``)."""
        return sum(
            g.buf.nbytes
            for layer in self.layers
            if isinstance(layer, GrowingLayer)
            for g in layer.grown
            if g.buf is not None
        )

    def allocation(self) -> tuple[int, int]:
        """The rows and columns its growing layers are allocated now (every layer alike; (0, 0) if none)."""
        for layer in self.layers:
            if isinstance(layer, GrowingLayer) and layer.grown[0].buf is not None:
                g = layer.grown[0]
                return g.buf.shape[0], g.buf.shape[g.dim]
        return 0, 0

    def count_into(self, counts: KVCounts) -> None:
        """Count this cache's reallocations and copies in ``counts`` from now on (a batch's cache adopted by the
        running batch counts in the batch's figures)."""
        self.counts = counts
        for layer in self.layers:
            if isinstance(layer, GrowingLayer):
                for grown in layer.grown:
                    grown.counts = counts
