"""A key/value cache (and an attention mask) that grows in place instead of being copied every decode step.

transformers' ``DynamicLayer.update`` concatenates each step's new column to the whole layer (``torch.cat``): every
decode step copied every row's whole cache, per layer — 26–49% of a step of the bundled model on the CPU
(docs/benchmarks.md, "Where a decode step's time goes"). Here each tensor lives in a larger allocation
(``Growing``) with spare columns on the right; a step writes its column into the spare room, and the tensor the
model sees is a view of the filled part. When the room runs out the allocation grows geometrically (half as much
again, at least ``MIN_SPARE`` columns), so N steps cost O(log N) reallocations.

Rows leave in place (those below a leaver move up; the columns only leavers filled are cut by moving the view's
start) and join in place when the allocation has spare rows (left by earlier leavers) and room for their padding;
otherwise a join reallocates, one copy of both sides. Every reallocation and every byte copied is counted in a
``KVCounts``, the running batch's figures (``BatchEngine.stats``).

Tensors handed in from outside (``layer.keys = t``, what transformers' own cache methods do) are adopted as they
are — no copy — but never written to: the first growth moves them into an allocation of our own.
"""

from __future__ import annotations

import torch

MIN_SPARE = 32  # columns: small caches would otherwise grow every few steps


class KVCounts:
    """Reallocations and copies of the running batch's cache and mask (plain ints: read from other threads)."""

    def __init__(self):
        self.reallocations = 0  # a tensor moved to a new, larger (or compacted) allocation
        # bytes of states already held that were copied again: by those moves, by rows joining, by rows moving
        # up when others leave (a step's own new column is written once and not counted)
        self.bytes_copied = 0

    def figures(self) -> dict:
        return {"kv_reallocations": self.reallocations, "kv_bytes_copied": self.bytes_copied}


class Growing:
    """A tensor ``[rows, ..., columns, ...]`` (columns on ``dim``, negative) held in a larger allocation: spare
    rows below, spare columns on the right (and on the left, once leavers' columns were cut). ``view`` is the
    filled part."""

    def __init__(self, dim: int, counts: KVCounts | None = None):
        self.dim = dim
        self.counts = counts if counts is not None else KVCounts()
        self.adopt(None)

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def view(self) -> torch.Tensor | None:
        if self.buf is None:
            return None
        return self.buf[: self.rows].narrow(self.dim, self.start, self.end - self.start)

    @property
    def width(self) -> int:
        return self.end - self.start

    def _cols(self, t: torch.Tensor, a: int, b: int) -> torch.Tensor:
        return t.narrow(self.dim, a, b - a)

    # -- changing ------------------------------------------------------------------------------------------
    def adopt(self, t: torch.Tensor | None) -> None:
        """Take ``t`` as the whole tensor, without a copy; it is never written to (``owned`` False)."""
        self.buf, self.owned = t, False
        self.rows = t.shape[0] if t is not None else 0
        self.start, self.end = 0, t.shape[self.dim] if t is not None else 0

    def append(self, t: torch.Tensor) -> None:
        """Add ``t``'s columns on the right of every row (``t`` has exactly ``rows`` rows)."""
        if self.buf is None:
            self.adopt(t)
            return
        n = t.shape[self.dim]
        if not self._room(n):
            self._reallocate(self.width + n)
        self._cols(self.buf[: self.rows], self.end, self.end + n).copy_(t)
        self.end += n

    def reserve(self, n: int) -> torch.Tensor:
        """``view`` with ``n`` more columns on the right, made writable (growing if needed) but not yet part of
        ``view``: the caller fills them, then ``extend`` takes them in."""
        if not self._room(n):
            self._reallocate(self.width + n)
        return self._cols(self.buf[: self.rows], self.start, self.end + n)

    def extend(self, n: int) -> None:
        self.end += n

    def keep(self, index: list[int], cut: int) -> None:
        """Keep only the rows at ``index`` (ascending) and drop the ``cut`` leftmost columns. In place: the kept
        rows below the first leaver move up; the columns go by moving the view's start."""
        if not self.owned:
            self._reallocate(self.width - cut, index=index, cut=cut)
            return
        self.start += cut
        moved = next((i for i, j in enumerate(index) if i != j), len(index))
        if moved < len(index):
            rows = self.view
            src = rows.index_select(0, torch.tensor(index[moved:], device=rows.device))
            rows[moved : len(index)].copy_(src)
            self.counts.bytes_copied += 2 * src.nbytes  # gathered, then written back
        self.rows = len(index)
        if 4 * self.rows < self.buf.shape[0]:  # most rows gone: give their memory back
            self._reallocate(self.width)

    def join(self, other: torch.Tensor, pad_self: int, pad_other: int) -> None:
        """Append ``other``'s rows below, after giving every current row ``pad_self`` zero columns on its left
        and ``other``'s rows ``pad_other`` (so both sides end up equally wide)."""
        n = other.shape[0]
        width = self.width + pad_self
        if not (self.owned and self.buf.shape[0] >= self.rows + n and self.start >= pad_self):
            self._reallocate(width, rows=self.rows + n, pad=pad_self)
        else:
            self._cols(self.buf[: self.rows], self.start - pad_self, self.start).zero_()
            self.start -= pad_self
        new = self._cols(self.buf[self.rows : self.rows + n], self.start, self.end)
        self._cols(new, 0, pad_other).zero_()
        self._cols(new, pad_other, width).copy_(other)
        self.counts.bytes_copied += other.nbytes
        self.rows += n

    # -- the allocation ------------------------------------------------------------------------------------
    def _room(self, n: int) -> bool:
        return self.owned and self.end + n <= self.buf.shape[self.dim]

    def _reallocate(self, width: int, rows=None, pad: int = 0, index=None, cut: int = 0) -> None:
        """Move the filled part (its rows at ``index``, less ``cut`` columns, after ``pad`` zero columns) to a
        new allocation of ``rows`` rows and room for ``width`` columns plus spare ones, starting at column 0."""
        old = self.view
        if index is not None:
            old = old.index_select(0, torch.tensor(index, device=old.device))
        old = self._cols(old, cut, old.shape[self.dim])
        rows = rows if rows is not None else old.shape[0]
        columns = width + max(width // 2, MIN_SPARE)
        shape = list(old.shape)
        shape[0], shape[self.dim] = rows, columns
        buf = torch.empty(shape, dtype=old.dtype, device=old.device)
        if pad:
            self._cols(buf[: old.shape[0]], 0, pad).zero_()
        self._cols(buf[: old.shape[0]], pad, pad + old.shape[self.dim]).copy_(old)
        self.buf, self.owned = buf, True
        self.rows, self.start, self.end = old.shape[0], 0, pad + old.shape[self.dim]
        self.counts.reallocations += 1
        self.counts.bytes_copied += old.nbytes
