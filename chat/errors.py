"""Refusals a person can meet: a stable code and a sentence."""


class ChatError(Exception):
    """A request the app refuses; ``code`` is stable, ``detail`` is for a person. ``retry_after``: seconds until
    the same request could succeed, where the refusal knows (a rate or quota); the API's ``Retry-After`` is it,
    so no caller has to read the number back out of the sentence."""

    def __init__(self, code: str, detail: str, *, retry_after: float | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
