"""What a LoRA run learns from, as plain data (``SftExample``, ``PreferencePair``), and how each becomes a row of
trl's datasets: conversational where the model has a chat template, else in the plain format the worker prompts
such a model with; its oldest turns dropped until prompt and answer fit the run's ``max_length`` (``fit``), as
trl would otherwise cut the answer — the one part that is learnt. The run itself is ``training.py``'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.prompt import render_plain


@dataclass(frozen=True)
class SftExample:
    """A conversation up to a reply (``messages``, OpenAI-style: system, user and assistant turns, ending with
    a user turn) and the answer to learn in place of the reply."""

    messages: list[dict]
    answer: str


@dataclass(frozen=True)
class PreferencePair:
    """A prompt (as ``SftExample.messages``) with a better and a worse answer to it."""

    messages: list[dict]
    chosen: str
    rejected: str


def sft_rows(examples: Sequence[SftExample], chat: bool) -> list[dict]:
    """trl's prompt–completion rows: conversational for a model with a chat template (trl renders them through
    it), else the plain format the worker prompts such a model with (``inference.prompt.render_plain``), the
    answer after "Assistant:" ending its turn with a new line."""
    if chat:
        return [
            {"prompt": list(e.messages), "completion": [{"role": "assistant", "content": e.answer}]} for e in examples
        ]
    return [{"prompt": render_plain(list(e.messages)), "completion": f" {e.answer}\n"} for e in examples]


def pair_rows(pairs: Sequence[PreferencePair], chat: bool) -> list[dict]:
    if not chat:
        return [
            {"prompt": render_plain(list(p.messages)), "chosen": f" {p.chosen}\n", "rejected": f" {p.rejected}\n"}
            for p in pairs
        ]
    return [
        {
            "prompt": list(p.messages),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]


def _length(tokenizer, messages: list[dict], answer: str, chat: bool) -> int:
    """Tokens of a prompt and its answer, as trl will count them (near enough: the answer's end of turn aside)."""
    if chat:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        prompt = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    else:
        prompt = tokenizer(render_plain(messages))["input_ids"]
    return len(prompt) + len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 2


def fit(tokenizer, messages: list[dict], answer: str, max_length: int, chat: bool) -> list[dict] | None:
    """The prompt with its oldest turns dropped (never the system prompt or the last user turn) until prompt and
    answer fit ``max_length`` tokens: trl keeps a long sequence's start, which would cut the answer, the one
    part that is learnt. None when even the last turn alone does not fit."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = list(messages[len(system) :])
    while True:
        if _length(tokenizer, system + turns, answer, chat) <= max_length:
            return system + turns
        users = [i for i, m in enumerate(turns) if m["role"] == "user"]
        if len(users) < 2:
            return None
        turns = turns[users[1] :]  # drop the oldest exchange: the conversation still starts with a user turn
