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
from collections.abc import Iterator
from functools import partial

import torch

from inference.adapters import ADAPTER_UNAVAILABLE, Adapter, AdapterSet
from inference.batching import Plan, RunningBatch, full_attention, plan_groups, prefill_inputs, row_states
from inference.counters import StepCounts
from inference.detok import Detokenizer
from inference.fairness import FairQueue
from inference.output import Queued, RequestHandle
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


class BatchEngine:
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
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self.eos_ids = set(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
        from inference.prompt import context_window as _window

        self.context_window = context_window or _window(model.config)
        # Waiting for a row, taken person by person (fairness.py); ``_places``: what each was last told of its place.
        self._waiting = FairQueue()
        self._places: dict[Request, int] = {}
        self._cancelled: dict[str, float] = {}  # request id → when; also remembers ids not seen yet
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._batch = RunningBatch()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.counts = StepCounts(max_batch_size)
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
        }

    # -- the stepping thread: schedule → run → update -------------------------------------------------
    def _run(self) -> None:
        """Each round: schedule (cancels, newcomers) → run (prefill them, or one decode step) → update (each
        request accepts its sampled token; finished ones leave the batch)."""
        torch.set_grad_enabled(False)
        admitted = 0  # admission rounds in a row without a decode step
        while not self._stopping.is_set():
            newcomers = self._schedule()
            try:
                if newcomers:
                    for requests, tokens in self._prefill(newcomers):
                        self._update(requests, tokens)
                    admitted += 1
                    # Requests that arrived during that prefill (a wave of users) are taken before the next
                    # decode step, so they start in it instead of one step later; bounded, so running replies
                    # are not held up for long.
                    if admitted < MAX_ADMIT_ROUNDS and len(self._waiting) and len(self._batch) < self.max_batch_size:
                        continue
                admitted = 0
                if self._batch:
                    self._update(*self._decode_step())
            except Exception as exc:  # a failed step fails its requests, never the engine
                log.exception("generation step failed")
                for req in self._batch.rows + newcomers:  # those already finished stay as they ended
                    self._finish(req, FinishReason.ERROR, error=f"{type(exc).__name__}: {exc}")
                self._batch.reset()
        for req in self._batch.rows:
            self._finish(req, FinishReason.CANCELLED)
        self._batch.reset()
        self.adapters.unload_all()  # the model is left as it was given

    def _schedule(self) -> list[Request]:
        """Apply cancels and take the newcomers there is room for (waiting briefly when the batch is idle)."""
        newcomers = self._take_newcomers(block=not self._batch)
        self._apply_cancels()
        self._tell_places()
        self.adapters.trim(self._batch.rows + newcomers)  # those idle too long
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
    def _take_newcomers(self, block: bool) -> list[Request]:
        """As many waiting requests as there are free rows, person by person (``FairQueue.take``)."""
        room = self.max_batch_size - len(self._batch)
        return self._waiting.take(room, wait=0.1 if block else 0.0)

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
            gone = [r for r in self._batch.rows if r.request_id in cancelled]
            for rid in [k for k, t in self._cancelled.items() if now - t > 300]:
                del self._cancelled[rid]
        # A request cancelled while waiting ends now, not when its turn comes: those behind it move up.
        gone += self._waiting.remove(lambda r: r.request_id in cancelled)
        for req in gone:
            self._finish(req, FinishReason.CANCELLED)
        self._drop_finished()

    def _was_cancelled(self, req: Request) -> bool:
        with self._lock:
            return req.request_id in self._cancelled

    # -- run: prefill newcomers, decode the batch ----------------------------------------------------------
    def _prefill(self, newcomers: list[Request]) -> Iterator[tuple[list[Request], torch.Tensor]]:
        """Prefill the newcomers into the running batch; yields each prefill forward's requests and their first
        sampled tokens, to be handed over before the next forward (cheap groups first)."""
        live = []
        for req in newcomers:
            if self._was_cancelled(req):
                self._finish(req, FinishReason.CANCELLED)
            elif self.context_window - len(req.generation.input_ids) < 1:
                self._finish(req, FinishReason.ERROR, error="The prompt fills the model's whole context window.")
            else:
                live.append(req)
        live, refused = self.adapters.admit(live, self._batch.rows)
        for req, error in refused:
            self._finish(req, FinishReason.ERROR, error=error, code=ADAPTER_UNAVAILABLE)
        if not live:
            return
        if self.prefix_cache is not None and len(live) > 1:
            alike: dict[Adapter | None, list[list[int]]] = {}  # a common start is common within one adapter only
            for req in live:
                alike.setdefault(req.generation.adapter, []).append(req.generation.input_ids)
            for adapter, prompts in alike.items():
                if len(prompts) > 1:
                    self._prefill_common_prefix(prompts, adapter)
        plans = [self._plan(req) for req in live]
        warm = [p for p in plans if p.warm]
        if warm:
            self._join_warm(warm)
        for group in plan_groups([p for p in plans if not p.warm]):
            yield self._prefill_group(group)

    def _plan(self, req: Request) -> Plan:
        """Start from the longest cached start of the prompt — never the whole prompt: its last token must go
        through the model to give the first logits."""
        prompt = req.generation.input_ids
        if self.prefix_cache is None:
            return Plan(req, prompt)
        entry, n = self.prefix_cache.lookup(prompt, space=req.generation.adapter)
        return Plan(req, prompt, entry, min(n, len(prompt) - 1))

    def _prefill_common_prefix(self, prompts: list[list[int]], adapter: Adapter | None) -> None:
        """Requests arriving together that start alike (the system prompt; the same starter; one prompt sent by
        many) get their common start computed once and cached, so each row then computes only its own rest."""
        n = min(len(p) for p in prompts) - 1
        first = prompts[0]
        for other in prompts[1:]:
            n = next((i for i in range(n) if other[i] != first[i]), n)
        entry, have = self.prefix_cache.lookup(first[:n], count=False, space=adapter)
        if n < self.prefix_cache.min_tokens or have >= n:
            return
        plan = Plan(None, first[:n], entry, have)
        cache, _, _ = self._forward([plan], [adapter])
        self.prefix_cache.insert(plan.prompt, partial(row_states, cache, 0, n), space=adapter)

    def _prefill_group(self, plans: list[Plan]) -> tuple[list[Request], torch.Tensor]:
        requests = [p.request for p in plans]
        cache, mask, logits = self._forward(plans, [r.generation.adapter for r in requests])
        next_tokens = self._sample(logits, requests)
        if self.prefix_cache is not None:
            for i, plan in enumerate(plans):
                if plan.todo > 1:  # mostly computed here: worth keeping for whoever sends it (or more) next
                    states = partial(row_states, cache, i, len(plan.prompt))
                    self.prefix_cache.insert(plan.prompt, states, space=plan.request.generation.adapter)
        self._batch.merge(requests, cache, mask, next_tokens, mask.sum(-1))
        return requests, next_tokens

    def _join_warm(self, plans: list[Plan]) -> None:
        """A request whose whole prompt but the last token is cached needs no prefill forward of its own: it
        joins the running batch like a row in mid-reply whose next input is that last token, and the next
        decode step gives its first logits. Saves a whole forward pass (all the weights read once more) per
        wave of arrivals."""
        _, mask, positions, cache = prefill_inputs(plans, self.model.config, self._pad_id(), self.device)
        next_tokens = torch.tensor([p.prompt[-1] for p in plans], dtype=torch.long, device=self.device)
        self._batch.merge([p.request for p in plans], cache, mask[:, :-1], next_tokens, positions[:, -1])

    def _forward(self, plans: list[Plan], adapters: list[Adapter | None]):
        ids, mask, positions, cache = prefill_inputs(plans, self.model.config, self._pad_id(), self.device)
        out = self.adapters.call(
            adapters,
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.past_key_values, mask, out.logits[:, -1, :]

    def _decode_step(self) -> tuple[list[Request], torch.Tensor]:
        """One forward pass over every row's pending token; returns the rows' requests and their sampled tokens."""
        batch = self._batch
        inputs = batch.decode_inputs()
        adapters = [r.generation.adapter for r in batch.rows]
        out = self.adapters.call(adapters, **inputs, use_cache=True, logits_to_keep=1)
        self.counts.count(adapters, with_adapters=self.adapters.peft is not None)
        batch.advance(inputs, self._sample(out.logits[:, -1, :], batch.rows))
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
