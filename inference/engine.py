"""The generation engine: requests in, text pieces out.

``BatchEngine`` runs every active request of a process in shared forward passes (continuous batching):
a background thread owns the model; new requests are prefilled together and then join the running batch
between decode steps; finished or cancelled ones leave it at once, freeing their rows of the KV cache.

The batch is kept *left-padded* (``batching.py``): every row's newest token sits in the same column, so one
decode step is one forward pass over all rows. This is what ``generate`` does for a static batch, made to
accept arrivals and departures between steps. With a prefix cache (``prefix_cache.py``) a newcomer's prefill
starts from the longest already computed start of its prompt, and requests arriving together compute their
common start once.

The engine schedules; the running rows and their tensors are one ``RunningBatch`` (``batching.py``), changed
only through its methods; each request's own state — its tokens, its text, whether and why it ends, its final
event — is a ``Request`` (``request.py``), shared with ``SerialEngine``.

A request may name a LoRA adapter of the model (``adapters.py``): it is loaded on first use, between steps, and
its rows run in the same forward passes as the base's and other adapters' rows, each forward told which rows
take which adapter. An engine never asked for one runs the plain model, exactly as before.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from functools import partial

import torch

from inference import fused
from inference.adapters import AdapterSet
from inference.batching import RunningBatch, full_attention, row_states
from inference.budget import KVBudget, cache_bytes, token_bytes
from inference.counters import StepCounts
from inference.detok import Detokenizer
from inference.fairness import FairQueue
from inference.output import Queued, RequestHandle
from inference.preemption import Preemption
from inference.prefill import Chunked, Prefills
from inference.prefix_cache import PrefixCache
from inference.request import FinishReason, GenerationRequest, Request  # GenerationRequest: part of this module's API
from inference.sampling import SamplingParams, sample_next

log = logging.getLogger(__name__)
MAX_ADMIT_ROUNDS = 3


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


class BatchEngine(Prefills, Preemption):
    """Continuous-batching generation over one model, driven by one background thread."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_batch_size: int = 16,
        context_window: int | None = None,
        eos_ids: set[int] | None = None,
        prefix_cache_bytes: int = 0,
        max_adapters: int = 4,
        adapter_budget_bytes: int = 0,
        adapter_idle_s: float = 600.0,
        prefill_chunk: int = 0,
        prefill_chunk_decoding: int | None = None,
        kv_budget_bytes: int = 0,
        preempt: bool = True,
        fuse_chunks: bool = False,
        direct_decode: bool | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
        from inference.prompt import context_window as _window

        self.context_window = context_window or _window(model.config)
        # Prompt tokens computed per round at most (0: no bound): a longer prompt is prefilled in chunks of this
        # many, between decode steps (prefill.py); ``_chunked``: the one prompt in chunks now, if any. While
        # replies are decoding, its chunks are ``prefill_chunk_decoding`` (None: the same) tokens at most: what
        # each of their tokens waits for in every round it needs (``_chunk_step``).
        self.prefill_chunk = prefill_chunk
        self.prefill_chunk_decoding = prefill_chunk if prefill_chunk_decoding is None else prefill_chunk_decoding
        self._chunked: Chunked | None = None
        # While replies decode, the prompt in chunks' next chunk shares the decode step's forward (fused.py) when
        # the model has the layout it computes; ``_chunk_pending``: that prompt's request and its tokens this round.
        self.fuse_chunks = fuse_chunks and fused.fusable(model)
        # The decode step through that same forward (one operator per step of a layer over every row, oneDNN's
        # post-operations) instead of transformers' modules, whose per-call work was a fifth of a one-row step's time
        # on a CPU (docs/benchmarks.md); not while an adapter is loaded. None: on a CPU, where it was measured.
        if direct_decode is None:
            direct_decode = self.device.type == "cpu"
        self.direct_decode = direct_decode and fused.fusable(model)
        self._chunk_pending: tuple[Request, int] | None = None
        dtype_size = torch.empty((), dtype=getattr(model, "dtype", torch.float32)).element_size()  # the KV's
        # The running batch's KV memory at its largest stays within ``kv_budget_bytes`` (budget.py; 0: no bound).
        self.kv_budget = KVBudget(kv_budget_bytes, token_bytes(model.config, dtype_size), self.context_window)
        # Waiting for a row, taken person by person (fairness.py); ``_places``: what each was last told of its place.
        self._waiting = FairQueue()
        # A person waiting with no reply running takes a row from one running several (preemption.py).
        self.preempt = preempt
        self._places: dict[Request, int] = {}
        self._cancelled: dict[str, float] = {}  # request id → when; also remembers ids not seen yet
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._batch = RunningBatch()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.counts = StepCounts(max_batch_size, kv=self._batch.kv_counts)
        self.prefix_cache = (
            PrefixCache(prefix_cache_bytes) if prefix_cache_bytes > 0 and full_attention(model.config) else None
        )
        self.adapters = AdapterSet(
            model,
            max_adapters=max_adapters,
            budget_bytes=adapter_budget_bytes,
            idle_s=adapter_idle_s,
            on_unload=self.prefix_cache.discard if self.prefix_cache is not None else None,  # its states go too
        )

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
        return self.submit_many([request])[0]

    def submit_many(self, requests: list[GenerationRequest]) -> list[RequestHandle]:
        """Queue requests that arrive together: the engine admits them in the same round (room permitting),
        so their common start is computed once."""
        handles, records = [], []
        for request in requests:
            if not request.request_id:
                request.request_id = f"r{next(self._ids)}"
            handle = RequestHandle(request.request_id, self)
            records.append(Request(request, handle, Detokenizer(self.tokenizer, request.stop_strings)))
            handles.append(handle)
        self._waiting.put_many(records)  # at once: the next admission sees them together
        self.start()
        return handles

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
    def steps(self) -> int:
        """Decode steps run."""
        return self.counts.steps

    @property
    def active(self) -> int:
        """Unfinished requests in the running batch."""
        return sum(1 for req in self._batch.rows if not req.status.finished)

    def stats(self) -> dict:
        """Counters for monitoring, read from another thread (plain ints: a figure a step old is fine)."""
        cache = self.prefix_cache.stats if self.prefix_cache is not None else None
        return {
            "batch_size": self.active,
            "waiting": len(self._waiting),  # requests queued for a row (/metrics: chat_worker_batch_waiting)
            "max_batch_size": self.max_batch_size,
            **self.counts.figures(),
            "prefix_lookups": cache.lookups if cache else 0,
            "prefix_hits": cache.hits if cache else 0,
            "prefix_tokens_looked_up": cache.tokens_looked_up if cache else 0,
            "prefix_tokens_reused": cache.tokens_reused if cache else 0,
            "adapters_loaded": list(self.adapters.names),
            "adapter_loads": self.adapters.loads,
            "adapter_unloads": self.adapters.unloads,
            # the running batch's keys and values now, and the prompt in chunks' (read once: another thread's)
            "kv_bytes": cache_bytes(self._batch.cache) + cache_bytes(getattr(self._chunked, "cache", None)),
            "kv_budget_bytes": self.kv_budget.budget_bytes,
        }

    # -- the stepping thread: schedule → run → update -------------------------------------------------
    def _run(self) -> None:
        """Each round: schedule (cancels, newcomers) → run (a chunk of the prompt in chunks, prefill newcomers, or
        one decode step) → update (each request accepts its sampled token; finished ones leave the batch)."""
        torch.set_grad_enabled(False)
        admitted = 0  # admission rounds in a row without a decode step
        while not self._stopping.is_set():
            newcomers: list[Request] = []
            try:
                left = self._continue_chunked()
                newcomers = self._schedule(left)
                if newcomers:
                    for requests, tokens in self._prefill(newcomers, left):
                        self._update(requests, tokens)
                    admitted += 1
                    # Requests that arrived during that prefill (a wave of users) are taken before the next
                    # decode step, so they start in it instead of one step later; bounded, so running replies
                    # are not held up for long (and not at all when prefill is bounded per round).
                    if (
                        not self.prefill_chunk
                        and admitted < MAX_ADMIT_ROUNDS
                        and len(self._waiting)
                        and len(self._batch) < self.max_batch_size
                    ):
                        continue
                admitted = 0
                if self._batch:
                    self._update(*self._decode_step())
            except Exception as exc:  # a failed step fails its requests, never the engine
                log.exception("generation step failed")
                for req in self._batch.rows + newcomers + self._chunked_requests():  # finished ones stay ended
                    self._finish(req, FinishReason.ERROR, error=f"{type(exc).__name__}: {exc}")
                self._batch.reset()
                self._chunked = None
        # Those still waiting end too (a preempted one has shown text): their readers are not left to time out.
        for req in self._batch.rows + self._chunked_requests() + self._waiting.remove(lambda r: True):
            self._finish(req, FinishReason.CANCELLED)
        self._batch.reset()
        self._chunked = None
        self.adapters.unload_all()  # the model is left as it was given

    def _schedule(self, left: int | None) -> list[Request]:
        """Apply cancels and take the newcomers there is room for — rows, ``left`` prompt tokens of this round's
        budget, KV memory — waiting briefly when the engine is idle."""
        idle = not self._batch and self._chunked is None
        if left is None or left > 0:  # a newcomer can be taken this round
            self._apply_cancels()  # first: a row that a cancel frees needs no preemption
            self._preempt_for_newcomer()
        newcomers = self._take_newcomers(left, block=idle)
        self._apply_cancels()
        self._tell_places()
        self.adapters.trim(self._batch.rows + newcomers + self._chunked_requests())  # those idle too long
        return newcomers

    def _update(self, requests: list[Request], tokens: torch.Tensor) -> None:
        """Hand each request its sampled token; end those it finishes and free their rows."""
        served = []
        for req, token in zip(requests, tokens.tolist()):
            if req.status.finished:
                continue
            served.append(req)
            reason = req.accept(token, eos_ids=self.eos_ids, context_window=self.context_window)
            if reason:
                self._finish(req, reason)
        self._waiting.charge(served)  # one reply token each, counted for its person (one lock per step)
        self._drop_finished()

    def _finish(self, req: Request, reason: FinishReason, error: str = "", code: str = "") -> None:
        """End a request (once) and forget a cancel of it, so the cancelled ids do not grow."""
        if req.status.finished:
            return
        with self._lock:
            self._cancelled.pop(req.request_id, None)
        self._waiting.done(req)
        self._places.pop(req, None)
        req.finish(reason, error, code)

    # -- schedule ---------------------------------------------------------------------------------------
    def _take_newcomers(self, left: int | None, block: bool) -> list[Request]:
        """As many waiting requests as rows, the round's prompt budget and KV memory allow, person by person
        (``FairQueue.take``). A prompt over the budget is taken only when none is in chunks (then it is)."""
        room = self.max_batch_size - len(self._batch) - (self._chunked is not None)
        if left is not None and left <= 0:
            room = 0  # this round's prompt budget is spent: newcomers wait for the next (one decode step)
        holding = self._batch.rows + self._chunked_requests()
        allocation = self._batch.allocation()
        return self._waiting.take(
            room,
            token_budget=left,
            cost=self._prefill_cost if left is not None else None,
            fits=lambda taken, req: self.kv_budget.fits(holding + taken, req, allocation),
            first_over_budget=self._chunked is None,
            wait=0.1 if block else 0.0,
        )

    def _tell_places(self) -> None:
        """Tell each request left waiting its place, when it changed (at most once per round, so per step)."""
        if not self._places and not len(self._waiting):
            return
        places = self._waiting.ahead()
        for req, ahead in places.items():
            if self._places.get(req) != ahead:
                self._places[req] = ahead
                req.handle.put(Queued(ahead))
        for req in [r for r in self._places if r not in places]:  # admitted: its text will say so
            del self._places[req]

    def _apply_cancels(self) -> None:
        with self._lock:
            if not self._cancelled:
                return
            now = time.monotonic()
            cancelled = set(self._cancelled)
            gone = [r for r in self._batch.rows + self._chunked_requests() if r.request_id in cancelled]
            for rid in [k for k, t in self._cancelled.items() if now - t > 300]:
                del self._cancelled[rid]
        # A request cancelled while waiting ends now, not when its turn comes: those behind it move up.
        gone += self._waiting.remove(lambda r: r.request_id in cancelled)
        for req in gone:
            self._finish(req, FinishReason.CANCELLED)
        if self._chunked is not None and self._chunked.plan.request.status.finished:
            self._chunked = None  # its cache goes with it
        self._drop_finished()

    def _was_cancelled(self, req: Request) -> bool:
        with self._lock:
            return req.request_id in self._cancelled

    # -- run: prefill newcomers (prefill.py), decode the batch ---------------------------------------------
    def _decode_step(self) -> tuple[list[Request], torch.Tensor]:
        """One forward pass over every row's pending token (and the round's chunk of a long prompt, when one is
        pending: ``fused.py``); returns the rows' requests and their sampled tokens — a prompt whose last chunk
        this was has joined, with its first token."""
        planned, self._chunk_pending = self._chunk_pending, None
        chunked, pending = self._chunked, 0
        # Not if it was cancelled meanwhile (another prompt may be in chunks now) or an adapter came in: the prompt
        # in chunks then goes on next round.
        if planned is not None and chunked is not None and chunked.plan.request is planned[0]:
            pending = min(planned[1], chunked.left) if self._fuses(planned[0]) else 0
        batch = self._batch
        inputs = batch.decode_inputs()
        adapters = [r.generation.adapter for r in batch.rows]
        if pending > 0:
            ids, mask, positions, cache = chunked.inputs(pending, self.model.config, self._pad_id(), self.device)
            logits = fused.forward(self.model, inputs, ids, positions, cache)
            self.counts.fused += 1
        elif self.direct_decode and self.adapters.peft is None:
            logits = fused.forward(self.model, inputs)
            self.counts.direct += 1
        else:
            logits = self.adapters.call(adapters, **inputs, use_cache=True, logits_to_keep=1).logits[:, -1, :]
        self.counts.count(adapters, with_adapters=self.adapters.peft is not None)
        rows = len(batch.rows)
        batch.advance(inputs, self._sample(logits[:rows], batch.rows))
        if pending > 0:
            self._chunk_computed(pending, mask, logits[rows:])  # its last: its row joins (``batch.next`` too)
        return list(batch.rows), batch.next

    def _sample(self, logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
        params = [r.generation.params for r in requests]
        return sample_next(
            logits, [p.temperature for p in params], [p.top_p for p in params], [r.random_generator() for r in requests]
        )

    # -- batch bookkeeping ----------------------------------------------------------------------------
    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return pad if isinstance(pad, int) else next(iter(self.eos_ids), 0)

    def _drop_finished(self) -> None:
        rows = self._batch.rows
        keep = [i for i, r in enumerate(rows) if not r.status.finished]
        if len(keep) == len(rows):
            return
        if self.prefix_cache is not None:
            kept = set(keep)
            self._remember_finished([i for i in range(len(rows)) if i not in kept])
        self._batch.keep(keep)

    def _remember_finished(self, indexes: list[int]) -> None:
        """Keep a finished reply's prompt + reply states: the conversation's next turn starts with exactly those
        tokens (the chat template re-renders the reply), so its prefill is only the new message."""
        batch = self._batch
        for i in indexes:
            req = batch.rows[i]
            tokens = list(req.generation.input_ids) + req.sampled[:-1]  # the last sampled token was never fed
            if int(batch.mask[i].sum()) == len(tokens):
                states = partial(row_states, batch.cache, i, len(tokens))
                self.prefix_cache.insert(tokens, states, space=req.generation.adapter)
