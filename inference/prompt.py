"""Conversation messages → prompt token ids.

Instruct models use their tokenizer's chat template. Base models (no template, e.g. GPT-2) get the plain
format below and stop when they start the next turn themselves:

    System: <system prompt>
    User: <message>
    Assistant: <reply>
    User: <message>
    Assistant:

Both are fitted to the context window by dropping the oldest turns (never the system prompt or the newest
user message), leaving room for ``max_new_tokens``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
# The model starting one of these turns itself means its own turn is over.
PLAIN_STOP_STRINGS = ("\nUser:", "\nSystem:")


class PromptTooLong(ValueError):
    """The newest message alone does not fit the context window."""


@dataclass
class Prompt:
    """Token ids ready for the engine, plus what the engine needs to stop the reply."""

    input_ids: list[int]
    stop_strings: tuple[str, ...] = ()
    dropped_messages: int = 0
    format: str = "chat_template"
    extra: dict = field(default_factory=dict)


def has_chat_template(tokenizer) -> bool:
    """True when the tokenizer carries its own chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_plain(messages: list[dict]) -> str:
    """The documented role-prefixed format for models without a chat template."""
    lines = [f"{PLAIN_ROLES[m['role']]}: {m['content']}" for m in messages]
    lines.append("Assistant:")
    return "\n".join(lines)


def _encode(tokenizer, messages: list[dict]) -> list[int]:
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already holds the special tokens it wants.
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(render_plain(messages), add_special_tokens=True)


def context_window(model_config, default: int = 2048) -> int:
    """The model's maximum sequence length, from whichever field its config uses."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model_config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def build_prompt(tokenizer, messages: list[dict], *, max_new_tokens: int, window: int) -> Prompt:
    """Encode ``messages`` (oldest first, each ``{"role", "content"}``) so that the reply fits ``window``."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("the last message must be the user's")
    budget = window - max_new_tokens
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    dropped = 0
    while True:
        ids = _encode(tokenizer, system + turns)
        if len(ids) <= budget:
            break
        if len(turns) <= 1:
            raise PromptTooLong(
                f"The message is too long for this model: {len(ids)} tokens with "
                f"{max_new_tokens} reserved for the reply, but the model reads at most {window}."
            )
        # Drop a whole exchange so the history never starts with an assistant turn.
        cut = 2 if len(turns) > 2 and turns[1]["role"] == "assistant" else 1
        turns = turns[cut:]
        dropped += cut
    if has_chat_template(tokenizer):
        return Prompt(input_ids=ids, dropped_messages=dropped)
    return Prompt(input_ids=ids, stop_strings=PLAIN_STOP_STRINGS, dropped_messages=dropped, format="plain")
