"""Refusals a person can meet: a stable code and a sentence."""


class ChatError(Exception):
    """A request the app refuses; ``code`` is stable, ``detail`` is for a person."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail
