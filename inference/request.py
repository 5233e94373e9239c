"""One request's state inside an engine, from submission to its ``Finished`` event.

Modelled on vLLM's ``Request``/``RequestStatus`` and transformers' ``RequestState``: the engine decides *when*
a request runs; the request itself records each sampled token, releases its text, and decides whether and why
it ends. ``BatchEngine`` and ``SerialEngine`` share it, so both end requests and time them the same way.
Its vocabularies — ``RequestStatus`` and the public ``FinishReason`` — are defined here, with no Django, so the
chat app can store and compare the same values.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import torch

from inference.adapters import Adapter
from inference.detok import Detokenizer
from inference.output import Finished, Piece, RequestHandle
from inference.sampling import SamplingParams


@dataclass
class GenerationRequest:
    """One reply to generate: what a caller submits (``BatchEngine.submit``)."""

    input_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    stop_strings: tuple[str, ...] = ()
    request_id: str = ""
    adapter: Adapter | None = None  # a LoRA adapter of the engine's model to write it with (adapters.py)
    # Whose request it is, as an opaque key: when rows are scarce the engine admits the key served least first
    # (fairness.py). The chat sets its owner's id; requests with the same key (or none) share one turn.
    fair_key: str = ""


class FinishReason(enum.StrEnum):
    """Why a request ended, as ``Finished.reason`` carries it; the values are the wire's (a ``str`` compares,
    hashes and serialises as its value)."""

    STOP = "stop"  # end-of-turn token or stop string
    LENGTH = "length"  # max_new_tokens or the context window
    CANCELLED = "cancelled"
    ERROR = "error"


class RequestStatus(enum.Enum):
    """Where a request stands; the ``FINISHED_*`` members carry the public finish reason."""

    WAITING = "waiting"  # submitted, not yet in the running batch
    RUNNING = "running"
    FINISHED_STOPPED = FinishReason.STOP
    FINISHED_LENGTH = FinishReason.LENGTH
    FINISHED_CANCELLED = FinishReason.CANCELLED
    FINISHED_ERROR = FinishReason.ERROR

    @property
    def finished(self) -> bool:
        """True for every ``FINISHED_*`` status."""
        return self.name.startswith("FINISHED_")

    @property
    def reason(self) -> FinishReason | None:
        """The public finish reason (``Finished.reason``): stop, length, cancelled or error; None while unfinished."""
        return self.value if self.finished else None

    @classmethod
    def for_reason(cls, reason: FinishReason | str) -> RequestStatus:
        """The finished status of a public finish reason."""
        status = cls(reason)
        if not status.finished:
            raise ValueError(f"not a finish reason: {reason!r}")
        return status


@dataclass(eq=False)
class Request:
    """An engine's record of one submitted ``GenerationRequest``."""

    generation: GenerationRequest
    handle: RequestHandle
    detok: Detokenizer
    submitted: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    completion_tokens: int = 0  # tokens of the reply; an end-of-turn token is not one
    sampled: list[int] = field(default_factory=list)  # every token sampled, the end-of-turn one included
    status: RequestStatus = RequestStatus.WAITING
    generator: torch.Generator | None = None  # a seeded request's own (``random_generator``)

    @property
    def request_id(self) -> str:
        """The id the caller cancels by."""
        return self.generation.request_id

    @property
    def prefill_ids(self) -> list[int]:
        """The tokens its prefill computes: its prompt, and for a request preempted in mid-reply and taken up again
        (inference/preemption.py) every token it has sampled too — the last of them never fed, so the prefill's
        logits give the token it would have written next."""
        ids = self.generation.input_ids
        return list(ids) + self.sampled if self.sampled else ids

    def random_generator(self) -> torch.Generator | None:
        """The request's own random generator, seeded once from ``params.seed`` on first use (so a request
        draws the same numbers wherever and beside whatever it runs); None for an unseeded request. A CPU
        generator whatever the model's device: it draws one number per step on the host, which the device
        never waits for (``sample_next``), and a seed gives the same numbers on a GPU as on a CPU."""
        seed = self.generation.params.seed
        if seed is None:
            return None
        if self.generator is None:
            self.generator = torch.Generator()
            self.generator.manual_seed(seed)
        return self.generator

    def accept(self, token: int, *, eos_ids, context_window: int) -> FinishReason | None:
        """Record one sampled token and push the text it releases to the handle; return why the request ends
        with it (``stop``: an end-of-turn token or a stop string; ``length``: ``max_new_tokens`` or the context
        window is used up), or None when it goes on. Ending it is the caller's job (``finish``)."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.sampled.append(token)
        if token in eos_ids:
            return FinishReason.STOP
        self.completion_tokens += 1
        text = self.detok.push(token)
        if text:
            self.handle.put(Piece(text, self.completion_tokens))
        if self.detok.stopped:
            return FinishReason.STOP
        used = len(self.generation.input_ids) + self.completion_tokens
        if self.completion_tokens >= self.generation.params.max_new_tokens or used >= context_window:
            return FinishReason.LENGTH
        return None

    def finish(self, reason: FinishReason, error: str = "", code: str = "") -> None:
        """End the request (once; later calls do nothing): release the text held back, then send ``Finished``
        with its timings — time to first token, and decode speed over the tokens after the first."""
        if self.status.finished:
            return
        self.status = RequestStatus.for_reason(reason)
        tail = self.detok.finish()
        if tail:
            self.handle.put(Piece(tail, self.completion_tokens))
        first = self.first_token_at
        decode_s = time.monotonic() - first if first else 0.0
        self.handle.put(
            Finished(
                reason=self.status.reason,
                text=self.detok.text,
                prompt_tokens=len(self.generation.input_ids),
                completion_tokens=self.completion_tokens,
                ttft_s=(first - self.submitted) if first else None,
                tokens_per_s=(self.completion_tokens - 1) / decode_s
                if decode_s > 0 and self.completion_tokens > 1
                else None,
                error=error,
                code=code,
            )
        )
