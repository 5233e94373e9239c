"""The plain engine, kept for comparison: one request at a time through ``model.generate``.

This is what a FastChat-style worker does; with 8 people chatting, the eighth waits for seven replies.
``inference.bench`` runs it beside ``BatchEngine`` so the difference is measured, not claimed.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .detok import TextStream
from .engine import GenerationRequest, eos_token_ids
from .events import Finished, Piece, RequestHandle


class _Stream(BaseStreamer, StoppingCriteria):
    """Receives each new token from ``generate`` and tells it when to stop (cancel or stop string)."""

    def __init__(self, engine, row):
        self.engine, self.row, self.prompt_seen, self.first_at, self.count = engine, row, False, None, 0

    def put(self, value):
        if not self.prompt_seen:  # generate hands the prompt over first
            self.prompt_seen = True
            return
        token = int(value.reshape(-1)[0])
        self.first_at = self.first_at or time.monotonic()
        if token in self.engine.eos_ids:
            return
        self.count += 1
        text = self.row.stream.push(token)
        if text:
            self.row.handle.put(Piece(text))

    def end(self):
        pass

    def __call__(self, input_ids, scores, **kwargs):
        stop = self.engine.is_cancelled(self.row.request.request_id) or self.row.stream.stopped
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _Row:
    def __init__(self, request, handle, stream, submitted):
        self.request, self.handle, self.stream, self.submitted = request, handle, stream, submitted


class SerialEngine:
    """Same interface as ``BatchEngine``; serves requests strictly one after another."""

    def __init__(self, model, tokenizer, *, eos_ids: set[int] | None = None, **_ignored):
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
        self.device = next(model.parameters()).device
        self._queue: queue.Queue = queue.Queue()
        self._cancelled: set[str] = set()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name="serial-engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> RequestHandle:
        request.request_id = request.request_id or f"s{next(self._ids)}"
        handle = RequestHandle(request.request_id, self)
        self._queue.put(_Row(request, handle, TextStream(self.tokenizer, request.stop_strings), time.monotonic()))
        return handle

    def cancel(self, request_id: str) -> None:
        self._cancelled.add(request_id)

    def is_cancelled(self, request_id: str) -> bool:
        return request_id in self._cancelled

    def shutdown(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self):
        torch.set_grad_enabled(False)
        while (row := self._queue.get()) is not None:
            params = row.request.params
            stream = _Stream(self, row)
            ids = torch.tensor([row.request.input_ids], device=self.device)
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p} \
                if params.temperature > 0 else {"do_sample": False}
            self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=params.max_new_tokens,
                                eos_token_id=list(self.eos_ids) or None, pad_token_id=self.tokenizer.pad_token_id,
                                streamer=stream, stopping_criteria=StoppingCriteriaList([stream]), **sampling)
            cancelled = self.is_cancelled(row.request.request_id)
            self._cancelled.discard(row.request.request_id)
            tail = row.stream.finish()
            if tail:
                row.handle.put(Piece(tail))
            now = time.monotonic()
            reason = "cancelled" if cancelled else ("length" if stream.count >= params.max_new_tokens else "stop")
            decode_s = now - stream.first_at if stream.first_at else 0
            row.handle.put(Finished(reason=reason, text=row.stream.text, prompt_tokens=len(row.request.input_ids),
                                    completion_tokens=stream.count,
                                    ttft_s=stream.first_at - row.submitted if stream.first_at else None,
                                    tokens_per_s=(stream.count - 1) / decode_s if decode_s and stream.count > 1
                                    else None))
