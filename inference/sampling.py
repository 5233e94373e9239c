"""Per-request sampling for a batch of next-token logits, vectorised so that one call serves every row."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one request picks its tokens. ``temperature`` 0 means greedy decoding. ``seed``: sample from a
    random generator of the request's own, seeded with it once, so the same request samples the same tokens
    whatever else shares its batch; None: the process's shared generator."""

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


def sample_next(logits: torch.Tensor, temperatures: torch.Tensor, top_ps: torch.Tensor,
                generators: list[torch.Generator | None] | None = None) -> torch.Tensor:
    """Pick one token per row. ``logits`` is [B, V]; ``temperatures`` and ``top_ps`` are [B] float tensors;
    ``generators``: per row, its own random generator (a seeded request) or None (the shared one)."""
    greedy = logits.argmax(dim=-1)
    sampled_rows = temperatures > 0
    if not bool(sampled_rows.any()):
        return greedy
    scaled = logits.float() / temperatures.clamp(min=1e-5).unsqueeze(-1)
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Keep the smallest prefix whose mass reaches top_p (the first token always survives).
    cumulative = sorted_probs.cumsum(dim=-1)
    outside = (cumulative - sorted_probs) >= top_ps.unsqueeze(-1)
    # Drawn in vocabulary order, not sorted order: two near-equal probabilities trade places in the sort when
    # a row's logits move in the last bit (batched beside other rows, or alone), and a draw over the sorted
    # list would then land on the other token. Over the vocabulary only the nucleus's edge is that fragile.
    probs = probs.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), 0.0)
    own = [i for i, g in enumerate(generators or ()) if g is not None and bool(sampled_rows[i])]
    shared = [i for i in range(len(probs)) if i not in own]
    sampled = torch.empty_like(greedy)
    if shared:
        index = torch.tensor(shared, device=probs.device)
        sampled[index] = torch.multinomial(probs[index], num_samples=1).squeeze(-1)
    for i in own:  # one draw per seeded row, from its own generator: what it draws depends on nothing else
        sampled[i] = torch.multinomial(probs[i:i + 1], num_samples=1, generator=generators[i]).squeeze(-1)[0]
    return torch.where(sampled_rows, sampled, greedy)


def resolve_params(requested: dict, generation_config, *, default_max_new_tokens: int = 256,
                   max_new_tokens_cap: int = 4096) -> SamplingParams:
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
    return SamplingParams(temperature=float(temperature), top_p=float(top_p),
                          max_new_tokens=int(min(max_new, max_new_tokens_cap)),
                          seed=None if seed is None else int(seed))
