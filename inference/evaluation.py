"""Score models on held-out gold answers: for each (prompt, gold answer), the mean log-likelihood per token of
the gold answer under each model, each model's greedy answer, and its chrF (sacrebleu) against the gold.

The models compared are arms of one loaded model: the base (every adapter disabled, peft's
``disable_adapter``) and adapters loaded beside it (``set_adapter``), so a comparison holds one copy of the
base's weights however many arms it has. Prompts are built as the worker builds them
(``inference.prompt.build_prompt``: the chat template, the same sanitising of typed special tokens), so a
score says how the served model would answer.

Django-free: the caller passes the examples as plain data and gets plain rows back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from inference.prompt import build_prompt, context_window

BASE = None  # the arm with every adapter disabled


@dataclass(frozen=True)
class HeldOut:
    """A prompt (OpenAI-style messages ending with a user turn), the gold answer to it and, where it came from a
    conversation, the reply's id (``ref``)."""

    messages: list[dict]
    gold: str
    ref: int | None = None


@dataclass(frozen=True)
class Score:
    """One arm on one example: mean log-likelihood per token of the gold answer (nats; nearer 0 is better), the
    greedy answer, and its chrF against the gold (0–100)."""

    loglik: float
    answer: str
    chrf: float


def _ids(tokenizer, example: HeldOut, window: int, max_new_tokens: int) -> tuple[list[int], list[int]]:
    """The prompt's token ids (as the worker builds them) and the gold answer's, ending with the end of the
    turn the template writes after an assistant reply (so "stopping here" is scored too)."""
    prompt = build_prompt(tokenizer, list(example.messages), max_new_tokens=max_new_tokens, window=window).input_ids
    gold = tokenizer(example.gold, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        gold = gold + [tokenizer.eos_token_id]
    return prompt, gold


def _loglik(model, prompt: list[int], gold: list[int]) -> float:
    """The mean log-probability per token of ``gold`` after ``prompt``, in one forward pass."""
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([prompt + gold], device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    picked = logprobs.gather(1, torch.tensor(gold, device=device).unsqueeze(1)).squeeze(1)
    return float(picked.mean())


def _greedy(model, tokenizer, prompt: list[int], max_new_tokens: int) -> str:
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True).strip()


def chrf(answer: str, gold: str) -> float:
    """sacrebleu's chrF (character n-gram F-score, 0–100) of one answer against its gold answer."""
    from sacrebleu.metrics import CHRF

    return round(float(CHRF().sentence_score(answer, [gold]).score), 2)


@contextlib.contextmanager
def arm(model, adapter: str | None):
    """``model`` as one arm: ``adapter`` active, or (``None``) the base with every adapter disabled. A model
    with no adapters at all is the base."""
    if not hasattr(model, "peft_config"):
        if adapter is not None:
            raise ValueError(f"adapter {adapter!r} asked of a model with none")
        yield model
        return
    if adapter is None:
        with model.disable_adapter():
            yield model
        return
    previous = model.active_adapter
    model.set_adapter(adapter)
    try:
        yield model
    finally:
        model.set_adapter(previous)


def score(model, tokenizer, examples: Sequence[HeldOut], *, max_new_tokens: int = 48) -> list[Score]:
    """Every example scored by ``model`` as it is (in an ``arm``)."""
    window = context_window(model.config)
    model.eval()
    out = []
    for example in examples:
        prompt, gold = _ids(tokenizer, example, window, max_new_tokens)
        answer = _greedy(model, tokenizer, prompt, max_new_tokens)
        out.append(Score(loglik=round(_loglik(model, prompt, gold), 4), answer=answer, chrf=chrf(answer, example.gold)))
    return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def means(scores: Sequence[Score]) -> dict:
    """An arm's means over the examples: log-likelihood per token and chrF."""
    return {"loglik": _mean([s.loglik for s in scores]), "chrf": _mean([s.chrf for s in scores])}


def behind(candidate: dict, reference: dict) -> bool:
    """Whether a candidate's means are worse than a reference's on either figure: a lower mean log-likelihood
    of the gold answers, or a lower mean chrF of its answers. Equal is not worse."""
    for key in ("loglik", "chrf"):
        if candidate.get(key) is not None and reference.get(key) is not None and candidate[key] < reference[key]:
            return True
    return False


def evaluate_arms(model, tokenizer, examples: Sequence[HeldOut], arms: dict, *, max_new_tokens: int = 48) -> dict:
    """Score several arms of one loaded model (label → adapter name, ``None`` = the base) on the same examples.

    Returns ``{"examples": n, "rows": [...], "means": {label: {"loglik", "chrf"}}}``; each row has the example's
    ``ref``, its prompt's last user turn, the gold answer, and per arm its log-likelihood, answer and chrF."""
    scores = {}
    for label, adapter in arms.items():
        with arm(model, adapter):
            scores[label] = score(model, tokenizer, examples, max_new_tokens=max_new_tokens)
    rows = []
    for i, example in enumerate(examples):
        asked = next((m["content"] for m in reversed(example.messages) if m["role"] == "user"), "")
        row = {"ref": example.ref, "prompt": asked, "gold": example.gold}
        row.update({label: asdict(scores[label][i]) for label in arms})
        rows.append(row)
    return {"examples": len(rows), "rows": rows, "means": {label: means(scores[label]) for label in arms}}


def ahead(candidate: dict, reference: dict) -> bool:
    """A candidate is ahead of a reference when it is behind on neither figure and better on one."""
    return not behind(candidate, reference) and candidate != reference


def compare(
    model,
    tokenizer,
    examples: Sequence[HeldOut],
    *,
    candidate: str | None,
    against: str | None = BASE,
    max_new_tokens: int = 48,
) -> dict:
    """Two arms (``evaluate_arms`` with labels ``candidate`` and ``against``), and whether the candidate is
    ahead (``candidate_ahead``)."""
    table = evaluate_arms(
        model, tokenizer, examples, {"candidate": candidate, "against": against}, max_new_tokens=max_new_tokens
    )
    table["candidate_ahead"] = bool(table["rows"]) and ahead(table["means"]["candidate"], table["means"]["against"])
    return table


def with_adapters(model, adapters: dict[str, str]):
    """``model`` wrapped with these adapters (name → folder saved by peft), none active until an ``arm`` picks
    one; ``model`` itself when there are none."""
    from peft import PeftModel

    wrapped = model
    for name, path in adapters.items():
        if wrapped is model:
            wrapped = PeftModel.from_pretrained(model, path, adapter_name=name)
        else:
            wrapped.load_adapter(path, adapter_name=name)
    return wrapped
