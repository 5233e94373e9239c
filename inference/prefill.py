"""Chunked prefill: a prompt longer than the step's token budget is computed a chunk at a time, between decode
steps, instead of in one forward that holds every running reply for its whole length.

Why: a forward over a 2,000-token prompt takes as long as dozens of decode steps; run whole, it freezes every
stream in the batch for that long, and eight long prompts arriving together all get their first token only when
the last one is computed. In chunks of a budget (``BatchEngine(prefill_chunk=…)``), every engine round computes
at most that many prompt tokens and then runs one decode step, so running streams keep flowing with a bounded gap,
and prompts are computed one after another, each starting to stream as soon as its own prefill ends.

vLLM and TGI put the chunk's tokens and the decode tokens in one forward; this engine's batch is left-padded, so
the chunk runs as its own forward beside the decode step (same weights read twice per round; at most one prompt is
in chunks at a time). The chunk's rows build a cache of their own — ``[cached past][chunks so far]``, no padding —
which joins the running batch when the last chunk gives the first logits, exactly like a one-forward prefill.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import torch

from inference.adapters import ADAPTER_UNAVAILABLE, Adapter
from inference.batching import Plan, plan_groups, prefill_inputs, row_states
from inference.request import FinishReason, Request


def default_chunk(device) -> int:
    """The round's prompt budget where the operator set none. On a CPU a forward's time grows with its tokens from
    the first; 512 computes a person's usual message (and a short document) whole in one round, and a longer
    prompt while replies decode goes in the smaller chunks of ``default_chunk_decoding``. A GPU computes
    thousands of tokens in about the time of a decode step, so a small chunk would only add forwards (vLLM's
    default budget is 2,048 and more)."""
    return 2048 if torch.device(device).type == "cuda" else 512


def default_chunk_decoding(device) -> int:
    """A long prompt's chunk per round while replies decode, where the operator set none. On a CPU each of its
    tokens costs the running streams 1–2.5 ms of arithmetic even fused into their step (docs/benchmarks.md, 2
    cores, 8 streams: with 32 the gaps' p99 stayed within 1.7× their median, with 64 it reached 3.8×); on a GPU
    the same as ``default_chunk``."""
    return 2048 if torch.device(device).type == "cuda" else 32


@dataclass(eq=False)
class Chunked:
    """One prompt being prefilled a chunk at a time: its plan (where its cached prefix ends), the cache built so
    far and how many of its prompt's tokens that cache holds."""

    plan: Plan
    cache: object = None  # a transformers DynamicCache, one row
    done: int = 0  # prompt tokens in ``cache``, the reused prefix included (which the first chunk copies in)

    def __post_init__(self):
        self.done = self.plan.reuse

    @property
    def left(self) -> int:
        """Prompt tokens still to compute."""
        return len(self.plan.prompt) - self.done

    def inputs(self, n: int, model_config, pad_id: int, device):
        """The model's arguments for the next ``n`` tokens of the prompt: ``ids [1, n]``, ``mask [1, done + n]``,
        ``positions [1, n]`` and the cache. The first chunk starts from the plan's cached prefix
        (``prefill_inputs``); later ones continue the chunk's own cache."""
        plan = self.plan
        if self.cache is None:
            first = Plan(plan.request, plan.prompt[: plan.reuse + n], plan.entry, plan.reuse)
            ids, mask, positions, cache = prefill_inputs([first], model_config, pad_id, device)
            self.cache = cache
            return ids, mask, positions, cache
        ids = torch.tensor([plan.prompt[self.done : self.done + n]], dtype=torch.long, device=device)
        mask = torch.ones((1, self.done + n), dtype=torch.long, device=device)
        positions = torch.arange(self.done, self.done + n, device=device).unsqueeze(0)
        return ids, mask, positions, self.cache


class Prefills:
    """The engine's prefill half (``BatchEngine`` takes it in): newcomers planned from their cached prefixes,
    computed in groups of like work or, past the round's budget, in chunks, and merged into the running batch.
    Kept apart from the scheduling and decoding in engine.py; it uses the engine's model, batch, prefix cache,
    adapters and counters."""

    def _prefill(self, newcomers: list[Request], left: int | None) -> Iterator[tuple[list[Request], torch.Tensor]]:
        """Prefill the newcomers into the running batch; yields each prefill forward's requests and their first
        sampled tokens, to be handed over before the next forward (cheap groups first). With a round budget
        (``left`` tokens), a prompt needing more than is left starts in chunks (``_continue_chunked``)."""
        live = []
        for req in newcomers:
            if self._was_cancelled(req):
                self._finish(req, FinishReason.CANCELLED)
            elif self.context_window - len(req.generation.input_ids) < 1:
                self._finish(req, FinishReason.ERROR, error="The prompt fills the model's whole context window.")
            else:
                live.append(req)
        live, refused = self.adapters.admit(live, self._batch.rows + self._chunked_requests())
        for req, error in refused:
            self._finish(req, FinishReason.ERROR, error=error, code=ADAPTER_UNAVAILABLE)
        if not live:
            return
        if self.prefix_cache is not None and len(live) > 1:
            alike: dict[Adapter | None, list[list[int]]] = {}  # a common start is common within one adapter only
            for req in live:
                alike.setdefault(req.generation.adapter, []).append(req.prefill_ids)
            for adapter, prompts in alike.items():
                if len(prompts) > 1:
                    self._prefill_common_prefix(prompts, adapter)
        plans = [self._plan(req) for req in live]
        if left is not None:  # at most one is over what is left (``take``): it starts in chunks, now
            over = next((p for p in plans if p.todo > left), None)
            if over is not None and self._chunked is None:
                plans.remove(over)
                self._chunked = Chunked(over)
                self._chunk(min(left, self._chunk_step()))  # never its last chunk: it needs more than ``left``
        warm = [p for p in plans if p.warm]
        if warm:
            self._join_warm(warm)
        for group in plan_groups([p for p in plans if not p.warm]):
            yield self._prefill_group(group)

    def _chunk_step(self) -> int:
        """The prompt in chunks' tokens this round. While replies are decoding, every one of them waits for the
        round's forwards before its next token, and a long prompt needs many rounds: its chunks take the smaller
        budget, so each of those rounds widens their gaps a little rather than a lot. With nothing decoding no one
        waits, and the whole budget computes it in fewer, cheaper-per-token forwards."""
        if self._batch and self.prefill_chunk_decoding:
            return min(self.prefill_chunk, self.prefill_chunk_decoding)
        return self.prefill_chunk

    def _continue_chunked(self) -> int | None:
        """Compute the next chunk of the prompt in chunks, if any; return what is left of this round's prompt
        budget for newcomers (None: no budget). A newcomer's prompt that fits what is left is computed whole this
        round even while replies decode: one wider gap for them once, where a long prompt would widen many."""
        if not self.prefill_chunk:
            return None
        budget = self.prefill_chunk
        self._chunk_pending = None
        if self._chunked is None:
            return budget
        req = self._chunked.plan.request
        if self._was_cancelled(req):  # Stop pressed since the last round: not one more chunk
            self._finish(req, FinishReason.CANCELLED)
            self._chunked = None
            return budget
        n = min(self._chunked.left, self._chunk_step())
        if self._fuses(req):  # computed in this round's decode step (fused.py), after newcomers join
            self._chunk_pending = (req, n)
            return budget - n
        first = self._chunk(n)
        if first:
            self._update(*first)
        return budget - n

    def _fuses(self, req: Request) -> bool:
        """Whether the prompt in chunks' next chunk can share the decode step's forward: fusing is on, replies are
        decoding, the model has the layout ``fused.py`` computes, and no adapter is loaded (peft's layers would
        apply one to every row of the fused products)."""
        return bool(self.fuse_chunks and self._batch and req.generation.adapter is None and self.adapters.peft is None)

    def _chunk(self, n: int) -> tuple[list[Request], torch.Tensor] | None:
        """Compute up to ``n`` more tokens of the prompt in chunks; after its last chunk, its row joins the batch
        and its first sampled token is returned with it (as a prefill group's)."""
        chunked = self._chunked
        n = min(n, chunked.left)
        if n <= 0:
            return None
        req = chunked.plan.request
        ids, mask, positions, cache = chunked.inputs(n, self.model.config, self._pad_id(), self.device)
        out = self._call([req.generation.adapter], ids, mask, positions, cache)
        return self._chunk_computed(n, mask, out.logits[:, -1, :])

    def _chunk_computed(
        self, n: int, mask: torch.Tensor, logits: torch.Tensor
    ) -> tuple[list[Request], torch.Tensor] | None:
        """The prompt in chunks has ``n`` more tokens in its cache (``mask`` over it), ``logits`` its last one's:
        after its last chunk, its row joins the batch with its first sampled token (returned)."""
        chunked = self._chunked
        req = chunked.plan.request
        cache = chunked.cache
        last = n == chunked.left
        chunked.done += n
        self.counts.chunks += 1
        if not last:
            return None
        next_tokens = self._sample(logits, [req])
        if self.prefix_cache is not None:
            states = partial(row_states, cache, 0, len(chunked.plan.prompt))
            self.prefix_cache.insert(chunked.plan.prompt, states, space=req.generation.adapter)
        self._batch.merge([req], cache, mask, next_tokens, mask.sum(-1))
        # Only now: had any of the above failed, the request must still be the one in chunks, which the engine's
        # error handling ends (it is in no other list yet).
        self._chunked = None
        return [req], next_tokens

    def _chunked_requests(self) -> list[Request]:
        return [self._chunked.plan.request] if self._chunked is not None else []

    def _plan(self, req: Request) -> Plan:
        """Start from the longest cached start of the prompt — never the whole prompt: its last token must go
        through the model to give the first logits."""
        prompt = req.prefill_ids
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
        out = self._call(adapters, ids, mask, positions, cache)
        return out.past_key_values, mask, out.logits[:, -1, :]

    def _call(self, adapters: list[Adapter | None], ids, mask, positions, cache):
        """One prefill forward (rows taking ``adapters``), keeping the logits of each row's last token only."""
        return self.adapters.call(
            adapters,
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )

    def _prefill_cost(self, req: Request) -> int:
        """The prompt tokens a request's prefill would compute: those past its longest cached start."""
        prompt = req.prefill_ids
        if self.prefix_cache is None:
            return len(prompt)
        _, n = self.prefix_cache.lookup(prompt, count=False, space=req.generation.adapter)
        return len(prompt) - min(n, len(prompt) - 1)
