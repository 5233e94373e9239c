"""A waiting reply's place, published to its person: "3 replies ahead of yours".

The engine tells a request its place in the worker's waiting list whenever it changes (at most once per step,
``inference/fairness.py``); this bounds how often that reaches the channel layer per reply. The place is this
worker's queue only: with several workers of a model, each knows and reports its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class PlaceNotes:
    """Decides which places of one reply are published: the first at once, the front of the line (0 ahead) at
    once, any other change at most once per ``interval_s``. A skipped one is overtaken by the next, by the reply's
    first delta (which ends the waiting note on the page), or by itself given again (``coalesce``'s requeue) once
    the interval has passed, so a tab never keeps an old place while the line stands still."""

    def __init__(self, publish: Callable[[int], None], interval_s: float, clock: Callable[[], float] = time.monotonic):
        self.publish, self.interval_s, self.clock = publish, interval_s, clock
        self.sent: int | None = None
        self.sent_at = 0.0

    def update(self, ahead: int) -> bool:
        """Publish ``ahead`` if it is due; True when it was. Never raises: a place is a courtesy, the reply goes on."""
        now = self.clock()
        if ahead == self.sent:
            return False
        if self.sent is not None and ahead != 0 and now - self.sent_at < self.interval_s:
            return False
        try:
            self.publish(ahead)
        except Exception:
            log.warning("could not publish a reply's place in the queue", exc_info=True)
            return False
        self.sent, self.sent_at = ahead, now
        return True

    def stop_waiting(self) -> bool:
        """The reply stopped waiting (its text started, or it ended): True the first time, when a place had been
        published, which then must be taken back (a page loaded later shows none)."""
        was, self.sent = self.sent, None
        return was is not None
