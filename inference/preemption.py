"""Preemption for fairness: a person waiting with no reply running takes a row from a person running several.

Why: admission in fair order (fairness.py) only decides who gets a row that *frees*. When a crowd arrives over a
few seconds — eight people with five tabs each sending at once — the first arrivals take every free row, and a
person who came a second later waits for a whole wave of replies to end before their first token (42–95 s on this
CPU, docs/benchmarks.md), while others stream four replies each. vLLM preempts rows when memory runs out, by
recomputation; this engine preempts for turns between people, the same way, and only in this case: every row is
taken, the request next in fair order (fairness.py) is of a person with nothing running, and some person holds two
rows or more and has been served at least as much (so the freed row goes to the newcomer, not back to them). It
takes that person's youngest row (fewest tokens written: its reader has seen least, and it costs least to take up
again), never their last one and never one that has not written yet, so nobody is ever left with nothing and two
people cannot take rows from each other in turn. One row per round at most: a crowd of newcomers gets a row each
over as many decode steps.

A preempted request keeps everything that is its own — its tokens sampled so far, its text released, its stop
strings' state, its random generator — and goes back to the head of its person's waiting line, its place told
like any waiting request's (its page shows "N replies ahead of yours" under the text so far). Its keys and values
go into the prefix cache (when the engine has one), so taking it up again joins the batch without recomputing
anything while they are still cached; otherwise its prompt and every token it wrote are prefilled again
(``Request.prefill_ids``) and its next token is the one it would have written: greedy, the same tokens as a run
never preempted; seeded, the same random numbers (a prefill computes in another order than decode steps, so
sampled tokens match up to float rounding, as between a reply alone and in a batch).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from inference.request import Request, RequestStatus

log = logging.getLogger(__name__)


def victim(rows: list[Request], served: Callable[[str], int | None], at_least: int) -> int | None:
    """The row to preempt: of the person holding the most rows (two at least; a tie goes to the person whose row
    came first) among those served ``at_least`` as much as the newcomer, their row with the fewest tokens written
    (one that has written none, just joined, is not taken). None when nobody qualifies."""
    held: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        held.setdefault(r.generation.fair_key, []).append(i)
    best: list[int] = []
    for key, indexes in held.items():
        if len(indexes) > max(len(best), 1) and (served(key) or 0) >= at_least:
            best = indexes
    candidates = [i for i in best if rows[i].sampled]
    if not candidates:
        return None
    return min(candidates, key=lambda i: (rows[i].completion_tokens, -i))


class Preemption:
    """The engine's preemption half (``BatchEngine`` takes it in); it uses the engine's batch, waiting list, KV
    budget, prefix cache and counters."""

    def _preempt_for_newcomer(self) -> None:
        """Before admission, when every row is taken: one row back from a person running several, for the person
        next in line with nothing running (module docstring)."""
        if not self.preempt or self._chunked is not None or len(self._batch) < self.max_batch_size:
            return
        head = self._waiting.starving()
        if head is None:
            return
        newcomer, served = head
        rows = list(self._batch.rows)
        i = victim(rows, self._waiting.served, served)
        if i is None:
            return
        if not self.kv_budget.fits(rows[:i] + rows[i + 1 :], newcomer, self._batch.allocation()):
            return  # the newcomer would not fit even so: taking the row back would only stall its owner
        if self.prefix_cache is not None:
            try:
                self._remember_finished([i])  # what it has computed, to take it up again without recomputing
            except Exception:  # (out of memory) it is only a saving: the request is prefilled again instead
                log.warning("could not keep a preempted row's keys and values", exc_info=True)
        self._batch.keep([j for j in range(len(rows)) if j != i])
        rows[i].status = RequestStatus.WAITING
        self._waiting.requeue(rows[i])
        self.counts.preemptions += 1
