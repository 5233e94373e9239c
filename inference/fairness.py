"""The engine's waiting list, fair between people: when rows are scarce, the person served least goes first.

Each request carries an opaque ``fair_key`` (``GenerationRequest.fair_key``: the chat sets its owner's id; the
engine never knows what it means). Waiting requests are grouped by key, each group in arrival order. Whenever
there is room, the next request admitted is the head of the group whose key has been *served least*, counted in
tokens: every prompt token the engine computes for the key counts ``PROMPT_WEIGHT``, every reply token
``REPLY_WEIGHT``. Ties go to the key with fewer rows running, then to the earliest arrival.

Why a virtual token counter (Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024) and not
deficit round-robin: DRR needs a quantum and visits keys in a fixed cycle, which only approximates "least served
goes first" and is fair per round, not per token; a counter is one number per key, answers the question the
scheduler asks at a free row directly, and counts what costs — tokens, prompt and reply — not requests. Reply
tokens weigh more because on this engine each is a whole decode step's share, where prompt tokens are computed
many per forward.

Counters never bank credit: a key with nothing waiting and nothing running is forgotten, and one that arrives
(or comes back) starts at the least counter among the keys in service (0 on an idle engine) — so a person idle
for an hour is not owed an hour, and a person served a lot yesterday is not punished today.

The fair order only chooses *which* request gets a free row; it never touches what a request computes, so every
request's tokens are the same as in arrival order. The waiting list is this engine's, so a position is a place in
this worker's queue; with several workers of a model, each reports its own.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable

from inference.request import Request

PROMPT_WEIGHT = 1
REPLY_WEIGHT = 2


class FairQueue:
    """Requests waiting for a row, taken person by person (thread-safe: submitters put, the engine's thread
    takes, charges and ends)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._groups: dict[str, deque[tuple[int, Request]]] = {}  # key → (arrival, request), oldest first
        self._served: dict[str, int] = {}  # key → tokens served, weighted (the virtual counter)
        self._running: dict[str, int] = {}  # key → rows taken and not yet ended
        self._taken: dict[Request, int] = {}  # requests taken and not yet ended (``done`` ends each once): arrival
        self._arrivals = itertools.count()

    # -- submitters ---------------------------------------------------------------------------------------
    def put_many(self, requests: Iterable[Request]) -> None:
        """Queue requests (in this order), all visible to the next ``take`` together."""
        with self._cond:
            for req in requests:
                key = req.generation.fair_key
                self._join(key)
                self._groups.setdefault(key, deque()).append((next(self._arrivals), req))
            self._cond.notify()

    # -- the engine's thread ----------------------------------------------------------------------------------
    def take(
        self,
        rows: int,
        *,
        token_budget: int | None = None,
        cost: Callable[[Request], int] | None = None,
        fits: Callable[[list[Request], Request], bool] | None = None,
        first_over_budget: bool = True,
        wait: float = 0.0,
    ) -> list[Request]:
        """Up to ``rows`` requests in fair order, each charged its prompt as it is taken (so the next pick of
        the same call already sees it). With ``token_budget``, stop before a request whose ``cost`` (the tokens
        its prefill computes; its prompt's length by default) passes what is left of it — except the first, with
        ``first_over_budget`` (a prompt larger than the budget must still start; the engine chunks it). With
        ``fits``, stop before a request that ``fits(taken so far, it)`` refuses (memory). Never skips: the
        request whose turn it is waits for room, rather than being overtaken by smaller ones for ever.
        With ``wait``, wait that long for a first request when none is waiting."""
        taken: list[Request] = []
        with self._cond:
            if wait > 0 and rows > 0 and not self._groups:
                self._cond.wait(wait)
            left = token_budget
            while len(taken) < rows and self._groups:
                key = self._next_key()
                req = self._groups[key][0][1]
                prefill = cost(req) if cost is not None else len(req.generation.input_ids)
                if left is not None and prefill > left and (taken or not first_over_budget):
                    break
                if fits is not None and not fits(taken, req):
                    break
                arrival, _ = self._groups[key].popleft()
                if not self._groups[key]:
                    del self._groups[key]
                if not req.sampled:  # a preempted request taken up again was charged its prompt the first time
                    self._served[key] += PROMPT_WEIGHT * len(req.generation.input_ids)
                self._running[key] = self._running.get(key, 0) + 1
                self._taken[req] = arrival
                if left is not None:
                    left -= prefill
                taken.append(req)
        return taken

    def charge(self, requests: Iterable[Request], tokens: int = 1) -> None:
        """Count ``tokens`` reply tokens served to each request's key (a decode step: one each)."""
        with self._cond:
            for req in requests:
                key = req.generation.fair_key
                if key in self._served:
                    self._served[key] += REPLY_WEIGHT * tokens

    def done(self, req: Request) -> None:
        """A request ended (finished, cancelled, failed, refused at admission): its row is free. Its key is
        forgotten once it has nothing waiting and nothing running. Ending a request twice does nothing."""
        with self._cond:
            if req not in self._taken:
                return
            del self._taken[req]
            self._release(req.generation.fair_key)
            self._forget_if_idle(req.generation.fair_key)

    def requeue(self, req: Request) -> None:
        """A taken request gives its row back without ending (preempted, inference/preemption.py): it waits again
        in its key's line where its arrival puts it (before everything its person sent later)."""
        with self._cond:
            arrival = self._taken.pop(req, None)
            if arrival is None:
                return
            key = req.generation.fair_key
            self._release(key)
            group = self._groups.setdefault(key, deque())
            group.insert(bisect.bisect(group, arrival, key=lambda item: item[0]), (arrival, req))

    def starving(self) -> tuple[Request, int] | None:
        """The request ``take`` would admit next and its key's counter, when its person has nothing running (a row
        taken back for it goes to it: inference/preemption.py); None otherwise."""
        with self._cond:
            if not self._groups:
                return None
            key = self._next_key()
            if self._running.get(key):
                return None
            return self._groups[key][0][1], self._served[key]

    def remove(self, predicate: Callable[[Request], bool]) -> list[Request]:
        """Take out of the waiting list every request ``predicate`` picks (cancelled before its turn)."""
        gone: list[Request] = []
        with self._cond:
            for key in list(self._groups):
                kept = deque()
                for item in self._groups[key]:
                    if predicate(item[1]):
                        gone.append(item[1])
                    else:
                        kept.append(item)
                if kept:
                    self._groups[key] = kept
                else:
                    del self._groups[key]
                    self._forget_if_idle(key)
        return gone

    def ahead(self) -> dict[Request, int]:
        """Each waiting request's place: how many requests would be admitted before it if rows freed one by one
        now (each taken request charged its prompt, as ``take`` does; decoding meanwhile is not foreseen)."""
        with self._cond:
            served = dict(self._served)
            heads = {key: 0 for key in self._groups}  # index of each group's next request
            heap = [self._rank(key, served[key], group[0][0]) for key, group in self._groups.items()]
            heapq.heapify(heap)
            places: dict[Request, int] = {}
            while heap:
                _, _, _, key = heapq.heappop(heap)
                group = self._groups[key]
                req = group[heads[key]][1]
                places[req] = len(places)
                if not req.sampled:  # as ``take`` charges
                    served[key] += PROMPT_WEIGHT * len(req.generation.input_ids)
                heads[key] += 1
                if heads[key] < len(group):
                    heapq.heappush(heap, self._rank(key, served[key], group[heads[key]][0]))
            return places

    # -- figures ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._cond:
            return sum(len(group) for group in self._groups.values())

    def served(self, key: str) -> int | None:
        """The key's counter; None for a key not in service (forgotten)."""
        with self._cond:
            return self._served.get(key)

    # -- inside the lock ----------------------------------------------------------------------------------------
    def _rank(self, key: str, served: int, arrival: int) -> tuple:
        return (served, self._running.get(key, 0), arrival, key)

    def _next_key(self) -> str:
        return min(self._groups, key=lambda k: self._rank(k, self._served[k], self._groups[k][0][0]))

    def _join(self, key: str) -> None:
        """A key not in service starts at the least counter in service: no banked credit, no old debt."""
        if key not in self._served:
            self._served[key] = min(self._served.values(), default=0)

    def _release(self, key: str) -> None:
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]

    def _forget_if_idle(self, key: str) -> None:
        if key not in self._groups and key not in self._running:
            self._served.pop(key, None)
