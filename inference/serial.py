"""The plain engine, kept for comparison: one request at a time through ``model.generate``.

This is what a FastChat-style worker does; with 8 people chatting, the eighth waits for seven replies.
``inference.bench`` runs it beside ``BatchEngine`` so the difference is measured, not claimed.
"""

from __future__ import annotations

import itertools
import queue
import threading

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from inference.adapters import ADAPTER_UNAVAILABLE
from inference.detok import Detokenizer
from inference.engine import GenerationRequest, eos_token_ids
from inference.output import RequestHandle
from inference.request import FinishReason, Request, RequestStatus


class _GenerateHooks(BaseStreamer, StoppingCriteria):
    """Receives each new token from ``generate`` and tells it when to stop (cancel, stop string, length)."""

    def __init__(self, engine: SerialEngine, request: Request):
        self.engine, self.request, self.prompt_seen = engine, request, False
        self.reason: FinishReason | None = None  # why the request ends, once a token has decided it

    def put(self, value):
        if not self.prompt_seen:  # generate hands the prompt over first
            self.prompt_seen = True
            return
        # generate asks its stopping criteria before streaming a token, so one more token arrives after the
        # one that ended the request: it is not part of the reply.
        if self.reason is None:
            self.reason = self.request.accept(
                int(value.reshape(-1)[0]), eos_ids=self.engine.eos_ids, context_window=self.engine.context_window
            )

    def end(self):
        pass

    def __call__(self, input_ids, scores, **kwargs):
        stop = self.engine.is_cancelled(self.request.request_id) or self.reason is not None
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class SerialEngine:
    """Same interface as ``BatchEngine``; serves requests strictly one after another."""

    def __init__(
        self, model, tokenizer, *, eos_ids: set[int] | None = None, context_window: int | None = None, **_ignored
    ):
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
        from inference.prompt import context_window as _window

        self.context_window = context_window or _window(model.config)
        self.device = next(model.parameters()).device
        self._queue: queue.Queue = queue.Queue()
        self._cancelled: set[str] = set()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name="serial-engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> RequestHandle:
        """Queue a request; its pieces and final event arrive on the returned handle."""
        request.request_id = request.request_id or f"s{next(self._ids)}"
        handle = RequestHandle(request.request_id, self)
        self._queue.put(Request(request, handle, Detokenizer(self.tokenizer, request.stop_strings)))
        return handle

    def cancel(self, request_id: str) -> None:
        """Stop the request at its next token."""
        self._cancelled.add(request_id)

    def is_cancelled(self, request_id: str) -> bool:
        """Whether ``cancel`` was called for this id (and its request has not ended since)."""
        return request_id in self._cancelled

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread once the queued requests are served."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self):
        torch.set_grad_enabled(False)
        while (req := self._queue.get()) is not None:
            if req.generation.adapter is not None:  # kept for comparison with the plain model only
                req.finish(FinishReason.ERROR, "This engine serves no adapters.", ADAPTER_UNAVAILABLE)
                continue
            req.status = RequestStatus.RUNNING
            params = req.generation.params
            hooks = _GenerateHooks(self, req)
            ids = torch.tensor([req.generation.input_ids], device=self.device)
            sampling = (
                {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
                if params.temperature > 0
                else {"do_sample": False}
            )
            self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=params.max_new_tokens,
                eos_token_id=list(self.eos_ids) or None,
                pad_token_id=self.tokenizer.pad_token_id,
                streamer=hooks,
                stopping_criteria=StoppingCriteriaList([hooks]),
                **sampling,
            )
            cancelled = self.is_cancelled(req.request_id)
            self._cancelled.discard(req.request_id)
            if cancelled:
                reason = FinishReason.CANCELLED
            else:  # generate may also stop on its own, at an end-of-turn token of the model's generation config
                reason = hooks.reason or (
                    FinishReason.LENGTH if req.completion_tokens >= params.max_new_tokens else FinishReason.STOP
                )
            req.finish(reason)
