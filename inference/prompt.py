"""Conversation messages → prompt token ids.

Instruct models use their tokenizer's chat template. Base models (no template, e.g. GPT-2) get the plain
format below and stop when they start the next turn themselves:

    System: <system prompt>
    User: <message>
    Assistant: <reply>
    User: <message>
    Assistant:

Both are fitted to the context window by dropping the oldest turns (never the system prompt or the newest
user message), leaving room for ``max_new_tokens``. Fitting costs O(history): each message is counted once,
newest first, and only the cut points next to the estimate are encoded in full (a full re-encode per dropped
turn cost minutes of CPU on a long conversation).

Message text is always text: a special-token string that someone types (``<|im_end|>``, ``<|endoftext|>``)
becomes ordinary text tokens, so it cannot close a turn or forge a system turn. Only the chat template's own
special tokens are encoded as such.
"""

from __future__ import annotations

import copy
import re
import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache

PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
# The model starting one of these turns itself means its own turn is over.
PLAIN_STOP_STRINGS = ("\nUser:", "\nSystem:")

# Private-use characters put around a special token typed inside a message before the template renders, so the
# rendered text tells the tokens the template wrote from the ones a person typed (transformers'
# `sanitize_control_tokens` does the same, but it flips a flag on the shared tokenizer: see `_text_backend`).
_MARK_START, _MARK_END = "\U000f0000", "\U000f0001"


# How a PromptTooLong's sentence starts (the worker stores such a failure with the code context_length_exceeded,
# which the API answers with; nothing reads this prefix back).
TOO_LONG = "The message is too long for this model"


class PromptTooLong(ValueError):
    """The newest message alone does not fit the context window."""


@dataclass
class Prompt:
    """Token ids ready for the engine, plus what the engine needs to stop the reply."""

    input_ids: list[int]
    stop_strings: tuple[str, ...] = ()
    dropped_messages: int = 0


def has_chat_template(tokenizer) -> bool:
    """True when the tokenizer carries its own chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_plain(messages: list[dict]) -> str:
    """The documented role-prefixed format for models without a chat template."""
    lines = [f"{PLAIN_ROLES[m['role']]}: {m['content']}" for m in messages]
    lines.append("Assistant:")
    return "\n".join(lines)


def context_window(model_config, default: int = 2048) -> int:
    """The model's maximum sequence length, from whichever field its config uses."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model_config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def build_prompt(tokenizer, messages: list[dict], *, max_new_tokens: int, window: int, continuing: str = "") -> Prompt:
    """Encode ``messages`` (oldest first, each ``{"role", "content"}``) so that the reply fits ``window``.

    ``continuing``: the text of a reply that ended on its length bound, to be continued (Continue). The prompt is
    then the one that reply was written from (``messages``, generation prompt and all) followed by the reply's
    own text as ordinary text tokens: exactly what the model had in front of it when it stopped, so it goes on
    where it was cut. This is what transformers' ``continue_final_message=True`` means, built so that nothing
    moves: that option re-renders the reply inside the template, which strips its trailing whitespace, and
    some templates render an earlier assistant turn unlike the generation prompt they wrote it after (thinking
    blocks dropped); and the reply's tokens, encoded apart, cannot merge with the template's across the seam."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("the last message must be the user's")
    system = [m for m in messages[:1] if m["role"] == "system"]
    codec = _Codec(tokenizer)
    reply = codec.as_text([continuing])[0] if continuing else []
    try:
        ids, dropped = _fit(
            codec, system, messages[len(system) :], window - max_new_tokens - len(reply), max_new_tokens, window
        )
    except PromptTooLong:
        if not continuing:
            raise
        raise PromptTooLong(
            f"{TOO_LONG} to continue this reply: its message, the reply so far and the {max_new_tokens} tokens "
            f"reserved for more need more than the {window} tokens the model reads."
        ) from None
    return Prompt(
        input_ids=ids + reply, stop_strings=() if codec.chat else PLAIN_STOP_STRINGS, dropped_messages=dropped
    )


# --- fitting ------------------------------------------------------------------------------------------------


def _cut_points(turns: list[dict]) -> list[int]:
    """Where the kept history may start, longest first: each step drops a whole exchange so the history never
    opens on an assistant turn, down to the newest message alone."""
    starts = [0]
    while len(turns) - starts[-1] > 1:
        first = starts[-1]
        pair = len(turns) - first > 2 and turns[first + 1]["role"] == "assistant"
        starts.append(first + (2 if pair else 1))
    return starts


def _fit(
    codec: "_Codec", system: list[dict], turns: list[dict], budget: int, max_new_tokens: int, window: int
) -> tuple[list[int], int]:
    """The ids of the longest history (system prompt + the turns from a cut point) within ``budget``, and how
    many turns were dropped. The same cut as dropping exchanges one at a time until the prompt fits, because a
    prompt only gets shorter as turns go."""
    starts = _cut_points(turns)
    last = len(starts) - 1
    exact: dict[int, list[int]] = {}

    def ids_of(j: int) -> list[int]:
        if j not in exact:
            exact[j] = codec.ids(system + turns[starts[j] :])
        return exact[j]

    estimate = _Estimate(codec, system, turns, starts)
    j = estimate.first_fitting(budget)
    # Counted alone, a message can take a token more or less than inside the prompt (a newline it starts with
    # merges with the template's): scale the estimate to the exact count at its cut, which lands the second
    # estimate on or next to the cut; the loops then make it exact, usually with one encoding on each side.
    estimate.calibrate(j, len(ids_of(j)))
    j = estimate.first_fitting(budget)
    while len(ids_of(j)) > budget:
        if j == last:
            raise PromptTooLong(
                f"{TOO_LONG}: {len(ids_of(j))} tokens with "
                f"{max_new_tokens} reserved for the reply, but the model reads at most {window}."
            )
        j += 1
    while j > 0 and len(ids_of(j - 1)) <= budget:
        j -= 1
    return ids_of(j), starts[j]


class _Estimate:
    """The prompt's token count from each cut point, from each message's own count plus the template's tokens
    around a message. Messages are counted newest first and only as far back as asked, so most of a long
    history is never encoded; each is counted once."""

    def __init__(self, codec: "_Codec", system: list[dict], turns: list[dict], starts: list[int]):
        self.codec, self.turns, self.starts = codec, turns, starts
        # The template's tokens around a message, measured on a tiny conversation of one-letter messages.
        probe = [{"role": "system", "content": "x"}] if system else []
        user, assistant = {"role": "user", "content": "x"}, {"role": "assistant", "content": "x"}
        one = len(codec.ids(probe + [user]))
        three = len(codec.ids(probe + [user, assistant, user]))
        letter = len(codec.as_text(["x"])[0])
        self.per_turn = max(0.0, (three - one) / 2 - letter)
        last = len(starts) - 1
        self.sums = {last: one - letter * (len(probe) + 1) + self._tokens(system + turns[starts[last] :])}
        self.scale = 1.0

    def _tokens(self, messages: list[dict]) -> int:
        return sum(len(ids) for ids in self.codec.as_text([m["content"] for m in messages]))

    def _raw(self, j: int) -> float:
        k = min(self.sums)
        while k > j:
            dropped = self.turns[self.starts[k - 1] : self.starts[k]]
            self.sums[k - 1] = self.sums[k] + self._tokens(dropped) + self.per_turn * len(dropped)
            k -= 1
        return self.sums[j]

    def calibrate(self, j: int, tokens: int) -> None:
        """Scale the estimates so that cut point ``j``'s is its exact count."""
        self.scale = tokens / self._raw(j) if self._raw(j) > 0 else 1.0

    def first_fitting(self, budget: int) -> int:
        """The earliest cut point whose prompt should fit (the newest message alone if none should)."""
        j = len(self.starts) - 1
        while j > 0 and self._raw(j - 1) * self.scale <= budget:
            j -= 1
        return j


# --- tokenizer calls ----------------------------------------------------------------------------------------

_text_backends: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_text_backends_lock = threading.Lock()


def _text_backend(tokenizer):
    """A private copy of the tokenizer's Rust backend that never matches special tokens (None for a Python
    tokenizer). transformers' ``split_special_tokens=True`` sets ``encode_special_tokens`` on the backend that
    all the worker's threads share, so another thread's encode can run with it: with one other thread encoding,
    7% of typed ``<|im_start|>`` came out as the control token. This copy's setting never changes."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    with _text_backends_lock:
        clone = _text_backends.get(tokenizer)
        if clone is None:
            clone = copy.deepcopy(backend)  # ~0.15 s, once per tokenizer
            clone.encode_special_tokens = True
            _text_backends[tokenizer] = clone
    return clone


@lru_cache(maxsize=16)
def _patterns(specials: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern]:
    """A regex for any special token (longest first, so a token wins over the tokens it contains) and one that
    splits a rendered chat at the marked ones, with None in place of the token for a marker left alone."""
    special = re.compile("|".join(map(re.escape, sorted(specials, key=len, reverse=True))) or "(?!)")
    marked = re.compile(f"{_MARK_START}({special.pattern}){_MARK_END}|[{_MARK_START}{_MARK_END}]")
    return special, marked


class _Codec:
    """Every tokenizer call of one prompt: renders, encodes with the template's special tokens, encodes as text."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.chat = has_chat_template(tokenizer)
        self._text = _text_backend(tokenizer)
        decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
        specials = [t.content for t in decoder.values() if t.special] or list(tokenizer.all_special_tokens)
        self._special, self._marked = _patterns(tuple(sorted(specials)))

    def as_text(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Each text's ids with any special-token string in it spelled out as ordinary text tokens."""
        if self._text is not None:
            return [e.ids for e in self._text.encode_batch(texts, add_special_tokens=add_special_tokens)]
        # A Python tokenizer takes the switch per call, with no state shared between threads.
        return [
            self.tokenizer.encode(t, add_special_tokens=add_special_tokens, split_special_tokens=True) for t in texts
        ]

    def ids(self, messages: list[dict]) -> list[int]:
        """The exact prompt ids of these messages, message text encoded as text."""
        if not self.chat:
            # The plain format writes no special tokens of its own: all of it is text.
            return self.as_text([render_plain(messages)], add_special_tokens=True)[0]
        if not any(self._special.search(m["content"]) for m in messages):
            # The common case: exactly the template's text as the tokenizer encodes it.
            return self.tokenizer.encode(self._render(messages), add_special_tokens=False)
        return self._marked_ids(messages)

    def _render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _marked_ids(self, messages: list[dict]) -> list[int]:
        """Render with the typed special tokens marked, then encode the rendered chat piece by piece: the pieces
        between marks with the template's special tokens, the marked tokens as text."""

        def mark(text: str) -> str:
            # Marks already in the text are dropped so they cannot forge a marked token.
            text = text.replace(_MARK_START, "").replace(_MARK_END, "")
            return self._special.sub(lambda m: f"{_MARK_START}{m.group()}{_MARK_END}", text)

        pieces = self._marked.split(self._render([{**m, "content": mark(m["content"])} for m in messages]))
        # pieces = [template text, typed token, template text, …]; a lone mark (the template cut a marked token
        # apart) splits the text too, so the text on either side cannot join into a special token.
        chat = [p for p in pieces[2::2] if p]
        typed = [p for p in pieces[1::2] if p]
        # Each later piece is encoded after a newline that is then taken off: SentencePiece tokenizers would
        # otherwise add the space they put at the start of a string (as transformers' `encode_marked_chat`).
        chat_ids = self.tokenizer(["\n"] + ["\n" + p for p in chat], add_special_tokens=False)["input_ids"]
        text_ids = self.as_text(["\n"] + ["\n" + p for p in typed])
        chat_pieces = iter(zip(chat, chat_ids[1:]))
        text_pieces = iter(zip(typed, text_ids[1:]))
        ids = self.tokenizer.encode(pieces[0], add_special_tokens=False) if pieces[0] else []
        for i, piece in enumerate(pieces[1:], start=1):
            if not piece:
                continue
            if i % 2:
                ids += _strip(*next(text_pieces), text_ids[0], lambda p: self.as_text([p])[0])
            else:
                ids += _strip(
                    *next(chat_pieces), chat_ids[0], lambda p: self.tokenizer.encode(p, add_special_tokens=False)
                )
        return ids


def _strip(piece: str, ids: list[int], newline: list[int], encode) -> list[int]:
    """``ids`` of newline + piece without the newline's ids, or the piece encoded alone where they merged."""
    return ids[len(newline) :] if ids[: len(newline)] == newline else encode(piece)
