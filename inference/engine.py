"""The generation engine: requests in, text pieces out.

``BatchEngine`` runs every active request of a process in shared forward passes (continuous batching):
a background thread owns the model; new requests are prefilled together and then join the running batch
between decode steps; finished or cancelled ones leave it at once, freeing their rows of the KV cache.

The batch is kept *left-padded*: every row's newest token sits in the same column, so one decode step is
one forward pass over ``[B, 1]`` tokens with a ``[B, T]`` attention mask that hides each row's padding and
explicit position ids per row. Joining pads the shorter side on the left; leaving drops rows and trims
columns that have become padding for everyone. This is what ``generate`` does for a static batch, made to
accept arrivals and departures between steps.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from .detok import TextStream
from .events import Finished, Piece, RequestHandle
from .sampling import SamplingParams, sample_next

log = logging.getLogger(__name__)


@dataclass
class GenerationRequest:
    """One reply to generate."""

    input_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    stop_strings: tuple[str, ...] = ()
    request_id: str = ""


@dataclass
class _Row:
    request: GenerationRequest
    handle: RequestHandle
    stream: TextStream
    submitted: float
    first_token_at: float | None = None
    completion_tokens: int = 0


def eos_token_ids(model, tokenizer) -> set[int]:
    """Every id that ends a turn: the generation config's, the config's and the tokenizer's."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


class BatchEngine:
    """Continuous-batching generation over one model, driven by one background thread."""

    def __init__(self, model, tokenizer, *, max_batch_size: int = 16, context_window: int | None = None,
                 eos_ids: set[int] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
        from .prompt import context_window as _window

        self.context_window = context_window or _window(model.config)
        self._incoming: queue.Queue[_Row] = queue.Queue()
        self._cancelled: dict[str, float] = {}  # request id → when; also remembers ids not seen yet
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._rows: list[_Row] = []
        self._cache = None
        self._mask: torch.Tensor | None = None  # [B, T] 1 for real tokens, 0 for left padding
        self._next: torch.Tensor | None = None  # [B] sampled but not yet fed tokens
        self._positions: torch.Tensor | None = None  # [B] position id of each row's next token
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.steps = 0

    # -- public API (any thread) -------------------------------------------------------------------
    def start(self) -> "BatchEngine":
        """Start the stepping thread (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="batch-engine", daemon=True)
                self._thread.start()
        return self

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread; active requests end as cancelled."""
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)

    def submit(self, request: GenerationRequest) -> RequestHandle:
        """Queue a request; its pieces and final event arrive on the returned handle."""
        if not request.request_id:
            request.request_id = f"r{next(self._ids)}"
        handle = RequestHandle(request.request_id, self)
        self._incoming.put(_Row(request, handle, TextStream(self.tokenizer, request.stop_strings), time.monotonic()))
        self.start()
        return handle

    def cancel(self, request_id: str) -> None:
        """End a request at the next step, keeping its text so far. Unknown ids are remembered for a while,
        so a cancel that overtakes its request still wins."""
        with self._lock:
            self._cancelled[request_id] = time.monotonic()

    def warmup(self) -> None:
        """Run one tiny request, so the first user does not pay for lazy kernel setup (~1 s here)."""
        ids = self.tokenizer.encode("Hello", add_special_tokens=False) or [0]
        for _ in self.submit(GenerationRequest(input_ids=ids, params=SamplingParams(max_new_tokens=2))):
            pass

    @property
    def active(self) -> int:
        """Requests in the running batch."""
        return len(self._rows)

    # -- the stepping thread --------------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stopping.is_set():
            newcomers = self._take_newcomers(block=not self._rows)
            self._apply_cancels()
            try:
                if newcomers:
                    self._prefill(newcomers)
                if self._rows:
                    self._decode_step()
            except Exception as exc:  # a failed step fails its requests, never the engine
                log.exception("generation step failed")
                for row in self._rows + newcomers:
                    if not row.handle.finished:
                        self._finish(row, "error", error=f"{type(exc).__name__}: {exc}")
                self._reset_batch()
        for row in self._rows:
            self._finish(row, "cancelled")
        self._reset_batch()

    def _take_newcomers(self, block: bool) -> list[_Row]:
        rows: list[_Row] = []
        room = self.max_batch_size - len(self._rows)
        try:
            if block and room > 0:
                rows.append(self._incoming.get(timeout=0.1))
            while len(rows) < room:
                rows.append(self._incoming.get_nowait())
        except queue.Empty:
            pass
        return rows

    def _apply_cancels(self) -> None:
        with self._lock:
            if not self._cancelled:
                return
            now = time.monotonic()
            gone = [r for r in self._rows if r.request.request_id in self._cancelled]
            for rid in [k for k, t in self._cancelled.items() if now - t > 300]:
                del self._cancelled[rid]
        for row in gone:
            self._finish(row, "cancelled")
        self._drop_finished()

    def _was_cancelled(self, row: _Row) -> bool:
        with self._lock:
            return row.request.request_id in self._cancelled

    def _prefill(self, rows: list[_Row]) -> None:
        live = []
        for row in rows:
            limit = self.context_window - len(row.request.input_ids)
            if self._was_cancelled(row):
                self._finish(row, "cancelled")
            elif limit < 1:
                self._finish(row, "error", error="The prompt fills the model's whole context window.")
            else:
                live.append(row)
        if not live:
            return
        width = max(len(r.request.input_ids) for r in live)
        ids = torch.full((len(live), width), self._pad_id(), dtype=torch.long)
        mask = torch.zeros((len(live), width), dtype=torch.long)
        for i, row in enumerate(live):
            prompt = row.request.input_ids
            ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        next_tokens = self._sample(out.logits[:, -1, :], live)
        self._merge(live, out.past_key_values, mask, next_tokens, mask.sum(-1))
        self._emit(live, next_tokens)

    def _decode_step(self) -> None:
        mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=-1)
        out = self.model(input_ids=self._next.unsqueeze(-1), attention_mask=mask,
                         position_ids=self._positions.unsqueeze(-1), past_key_values=self._cache,
                         use_cache=True, logits_to_keep=1)
        self.steps += 1
        self._mask = mask
        self._positions = self._positions + 1
        self._next = self._sample(out.logits[:, -1, :], self._rows)
        self._emit(list(self._rows), self._next)

    def _sample(self, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        temps = torch.tensor([r.request.params.temperature for r in rows], device=logits.device)
        top_ps = torch.tensor([r.request.params.top_p for r in rows], device=logits.device)
        return sample_next(logits, temps, top_ps)

    def _emit(self, rows: list[_Row], tokens: torch.Tensor) -> None:
        now = time.monotonic()
        for row, token in zip(rows, tokens.tolist()):
            if row.handle.finished:
                continue
            if row.first_token_at is None:
                row.first_token_at = now
            if token in self.eos_ids:
                self._finish(row, "stop")
                continue
            row.completion_tokens += 1
            text = row.stream.push(token)
            if text:
                row.handle.put(Piece(text))
            used = len(row.request.input_ids) + row.completion_tokens
            if row.stream.stopped:
                self._finish(row, "stop")
            elif row.completion_tokens >= row.request.params.max_new_tokens or used >= self.context_window:
                self._finish(row, "length")
        self._drop_finished()

    def _finish(self, row: _Row, reason: str, error: str = "") -> None:
        if row.handle.finished:
            return
        tail = row.stream.finish()
        if tail:
            row.handle.put(Piece(tail))
        with self._lock:
            self._cancelled.pop(row.request.request_id, None)
        now = time.monotonic()
        first = row.first_token_at
        decode_s = now - first if first else 0.0
        row.handle.put(Finished(
            reason=reason, text=row.stream.text, prompt_tokens=len(row.request.input_ids),
            completion_tokens=row.completion_tokens,
            ttft_s=(first - row.submitted) if first else None,
            tokens_per_s=(row.completion_tokens - 1) / decode_s if decode_s > 0 and row.completion_tokens > 1 else None,
            error=error,
        ))

    # -- batch bookkeeping ----------------------------------------------------------------------------
    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return pad if isinstance(pad, int) else next(iter(self.eos_ids), 0)

    def _merge(self, rows, cache, mask, next_tokens, positions) -> None:
        """Append prefilled rows to the running batch, left-padding whichever side is shorter."""
        if not self._rows:
            self._rows, self._cache, self._mask = list(rows), cache, mask
            self._next, self._positions = next_tokens, positions
            return
        old_t, new_t = self._mask.shape[1], mask.shape[1]
        width = max(old_t, new_t)
        for old_layer, new_layer in zip(self._cache.layers, cache.layers):
            for attr in ("keys", "values"):
                a = _left_pad(getattr(old_layer, attr), width - old_t, dim=-2)
                b = _left_pad(getattr(new_layer, attr), width - new_t, dim=-2)
                setattr(old_layer, attr, torch.cat([a, b], dim=0))
        self._mask = torch.cat([_left_pad(self._mask, width - old_t, -1), _left_pad(mask, width - new_t, -1)])
        self._next = torch.cat([self._next, next_tokens])
        self._positions = torch.cat([self._positions, positions])
        self._rows.extend(rows)

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self._rows) if not r.handle.finished]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset_batch()
            return
        index = torch.tensor(keep, device=self.device)
        self._rows = [self._rows[i] for i in keep]
        self._mask = self._mask.index_select(0, index)
        self._next = self._next.index_select(0, index)
        self._positions = self._positions.index_select(0, index)
        # Columns that are padding in every remaining row are dead weight for attention: cut them.
        first = int((self._mask.sum(0) > 0).nonzero()[0])
        self._mask = self._mask[:, first:]
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[..., first:, :]
            layer.values = layer.values.index_select(0, index)[..., first:, :]

    def _reset_batch(self) -> None:
        self._rows, self._cache, self._mask, self._next, self._positions = [], None, None, None, None


def _left_pad(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)
