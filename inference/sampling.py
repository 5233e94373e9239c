"""Per-request sampling for a batch of next-token logits, vectorised so that one call serves every row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one request picks its tokens. ``temperature`` 0 means greedy decoding. ``seed``: sample from a
    random generator of the request's own, seeded with it once, so the same request samples the same tokens
    whatever else shares its batch (and on whichever device: the generator is a CPU one, see ``sample_next``);
    None: the process's shared generator."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be greater than 0 and at most 1")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")


def sample_next(
    logits: torch.Tensor,
    temperatures: Sequence[float],
    top_ps: Sequence[float],
    generators: Sequence[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """Pick one token per row. ``logits`` is [B, V]; ``temperatures`` and ``top_ps``: per row, as plain numbers
    (what the requests asked for); ``generators``: per row, its own CPU random generator (a seeded request) or
    None (the process's shared one).

    A seeded request costs the batch nothing of its own on the device: which rows sample, and with which
    random number, is decided on the host from the requests' own values (reading the device would wait for it
    once per row), each row gets one uniform number (a seeded row's from its own generator, the others' from
    the shared one), and every sampled row is then picked in the same few kernels by inverse CDF: the first
    token, in vocabulary order, whose cumulative probability passes the row's number."""
    greedy = logits.argmax(dim=-1)
    sampled = [t > 0 for t in temperatures]
    if not any(sampled):
        return greedy
    uniforms = torch.rand(len(sampled))  # the shared generator: one number per row, one call per step
    for i, g in enumerate(generators or ()):
        if g is not None and sampled[i]:  # its own stream: what it draws depends on nothing else in the batch
            uniforms[i] = torch.rand(1, generator=g)[0]
    # One host-to-device copy per step for everything the rows asked for (a greedy row divides by 1: its pick
    # is the argmax whatever it samples).
    host = torch.tensor(
        [[t if s else 1.0 for t, s in zip(temperatures, sampled)], list(top_ps), [float(x) for x in sampled]]
    )
    values = torch.cat([host, uniforms.unsqueeze(0)]).to(device=logits.device, dtype=torch.float32)
    temps, tops, rows, u = values
    probs = torch.softmax(logits.float() / temps.unsqueeze(-1), dim=-1)
    if any(p < 1.0 for p, s in zip(top_ps, sampled) if s):
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always survives).
        cumulative = sorted_probs.cumsum(dim=-1)
        outside = (cumulative - sorted_probs) >= tops.unsqueeze(-1)
        probs = probs.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), 0.0)
    # Drawn in vocabulary order, not sorted order: two near-equal probabilities trade places in the sort when
    # a row's logits move in the last bit (batched beside other rows, or alone), and a draw over the sorted
    # list would then land on the other token. Over the vocabulary only the nucleus's edge is that fragile.
    cdf = probs.cumsum(dim=-1)
    target = (u * cdf[:, -1]).unsqueeze(-1)
    picked = torch.searchsorted(cdf, target, right=True).clamp_(max=probs.shape[-1] - 1)
    # A pick the float sums pushed off the end, or onto a token outside the nucleus, takes the row's best token.
    inside = probs.gather(-1, picked).squeeze(-1) > 0
    picked = torch.where(inside, picked.squeeze(-1), greedy)
    return torch.where(rows > 0, picked, greedy)


def resolve_params(
    requested: dict, generation_config, *, default_max_new_tokens: int = 256, max_new_tokens_cap: int = 4096
) -> SamplingParams:
    """Fill what the user did not choose from the model's generation config.

    A config that does not ask for sampling (``do_sample`` false, the transformers default) means greedy,
    i.e. temperature 0.
    """
    gc = generation_config
    sampling = bool(getattr(gc, "do_sample", False))
    temperature = requested.get("temperature")
    if temperature is None:
        temperature = float(getattr(gc, "temperature", None) or 1.0) if sampling else 0.0
    top_p = requested.get("top_p")
    if top_p is None:
        top_p = float(getattr(gc, "top_p", None) or 1.0) if sampling else 1.0
    max_new = requested.get("max_new_tokens") or getattr(gc, "max_new_tokens", None) or default_max_new_tokens
    seed = requested.get("seed")
    return SamplingParams(
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=int(min(max_new, max_new_tokens_cap)),
        seed=None if seed is None else int(seed),
    )
