"""What a precision costs in quality: the model's log-likelihood of a fixed plain English text.

The text (``quality_text.txt``, ~760 tokens with the bundled tokenizer) is public-domain prose written out for
this repository: Lincoln's Gettysburg Address, the openings of Dickens's *A Tale of Two Cities*, Thoreau's
*Walden* and Austen's *Pride and Prejudice*. It is scored as plain text (no chat template), every token after
the first predicted from all before it, so the figure is the language model's own, not a chat turn's. Famous
texts are ones a model has likely seen: the absolute figure flatters it; what matters is the difference between
precisions of one model on the same text.

Django-free: ``python -m inference.precision_bench`` prints it beside each precision's speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

TEXT_PATH = Path(__file__).with_name("quality_text.txt")


def fixed_text() -> str:
    return TEXT_PATH.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Likelihood:
    """A model's log-likelihood of a text: ``tokens`` predicted, their summed log-probability ``total`` (nats),
    its mean per token (nearer 0 is better) and the perplexity ``exp(-mean)`` (lower is better)."""

    tokens: int
    total: float

    @property
    def mean(self) -> float:
        return self.total / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(-self.mean)


def log_likelihood(model, tokenizer, text: str | None = None, *, window: int | None = None) -> Likelihood:
    """``model``'s log-likelihood of ``text`` (default: the fixed text), in forward passes of at most ``window``
    tokens (default: the model's context window, capped at 2048; a longer text is cut into consecutive windows,
    each scored on its own). Log-probabilities are taken in float32 and summed in float64, so a bfloat16
    model's figure is not rounded twice."""
    import torch

    from inference.prompt import context_window

    ids = tokenizer(fixed_text() if text is None else text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        raise ValueError("A text of at least two tokens is needed to score a model on it.")
    window = max(2, window or min(context_window(model.config), 2048))
    device = next(model.parameters()).device
    total, scored = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window]  # at least two tokens: start < len(ids) - 1
            x = torch.tensor([chunk], device=device)
            logits = model(input_ids=x).logits[0, :-1].float()
            logprobs = torch.log_softmax(logits, dim=-1).gather(1, x[0, 1:].unsqueeze(1))
            total += float(logprobs.double().sum())
            scored += len(chunk) - 1
    return Likelihood(tokens=scored, total=total)
