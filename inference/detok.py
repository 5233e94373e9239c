"""Incremental detokenisation with stop strings.

Text is released only when it is final: a token that ends inside a multi-byte character is held until the
character completes, and text that could be the start of a stop string is held until it is known not to be.
Joined, the released pieces are exactly the reply's text.
"""

from __future__ import annotations


class Detokenizer:
    """Turns a growing list of token ids into released text pieces."""

    def __init__(self, tokenizer, stop_strings: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.tokens: list[int] = []
        self._prefix = 0
        self._read = 0
        self._held = ""
        self.text = ""  # everything released so far
        self.stopped = False  # a stop string was met

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it releases (maybe empty; always empty after a stop string)."""
        if self.stopped:
            return ""
        self.tokens.append(token_id)
        before = self._decode(self.tokens[self._prefix : self._read])
        after = self._decode(self.tokens[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.tokens)
        return self._release(after[len(before) :])

    def finish(self) -> str:
        """Release whatever is held back (the reply ended for another reason than a stop string)."""
        if self.stopped:
            return ""
        rest = self._decode(self.tokens[self._prefix :])[len(self._decode(self.tokens[self._prefix : self._read])) :]
        out = self._held + rest
        self._held = ""
        self._prefix = self._read = len(self.tokens)
        self.text += out
        return out

    def _release(self, delta: str) -> str:
        buf = self._held + delta
        if not self.stop_strings:
            self.text += buf
            self._held = ""
            return buf
        hits = [buf.find(s) for s in self.stop_strings if s in buf]
        if hits:
            out = buf[: min(hits)]
            self._held = ""
            self.stopped = True
            self.text += out
            return out
        keep = 0
        for s in self.stop_strings:
            for k in range(min(len(s) - 1, len(buf)), 0, -1):
                if s.startswith(buf[-k:]):
                    keep = max(keep, k)
                    break
        out, self._held = (buf[:-keep], buf[-keep:]) if keep else (buf, "")
        self.text += out
        return out
