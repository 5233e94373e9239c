"""Replies sent together on the live stack (Daphne, a Celery worker with the bundled model, Redis), over the
websocket and over the API, by a person with a small allowance: the finding was an allowance of 30 tokens that
ended at 402 (three replies at once, plus their titles). Now the day's total stays within the allowance plus one
reply's bound, the replies past it are refused (quota_exhausted; the API's 429 insufficient_quota), and nothing
stays reserved once the reply has ended."""

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from django.conf import settings

from chat.limits import quotas
from chat.models import Message, QuotaOverride
from chat.replies import admission
from tests.chat.api.conftest import api, fresh_allowances  # noqa: F401 (fixtures)
from tests.helpers.live import recv, send

pytestmark = pytest.mark.e2e
ALLOWANCE = 30
NEW_TOKENS = 24
# Long enough that the admitted reply's prompt alone passes the allowance: its title is then refused too.
ASK = "In two short sentences, say why lighthouses were painted with bold stripes of colour."


def bound_of_one_reply(live_stack) -> int:
    """One reply's bound, as admission makes it for a new conversation's first message (this model's window)."""
    from chat.replies import liveness

    size = admission.reply_size(params={"max_new_tokens": NEW_TOKENS}, texts=[ASK])
    return size.tokens(liveness.context_window(liveness.workers_alive()))


def wait_for_log(live_stack, pattern: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, live_stack.log_tail(n=200_000)):
        assert time.monotonic() < deadline, f"no {pattern!r} in the worker's log:\n{live_stack.log_tail()}"
        time.sleep(0.1)


def spent(user) -> tuple[int, int]:
    """(today's tokens charged, the tokens of the person's stored replies)."""
    replies = Message.objects.filter(conversation__owner=user, role="assistant")
    return quotas.tokens_used_today(user.pk), sum((m.prompt_tokens or 0) + (m.completion_tokens or 0) for m in replies)


def test_replies_sent_together_over_the_websocket_stay_within_the_allowance_and_one_bound(chat, live_stack):
    user, ws_client = chat("together")
    QuotaOverride.objects.create(user=user, tokens_per_day=ALLOWANCE)

    async def go():
        async with ws_client.connect() as ws:
            for n in range(3):  # three sends at once: none of them charged yet
                params = {"max_new_tokens": NEW_TOKENS}
                await send(ws, {"type": "send", "conversation": None, "content": ASK, "params": params})
            replies, refusals, done = [], [], set()
            while len(replies) + len(refusals) < 3 or done != {r["id"] for r in replies}:
                frame = await recv(ws, timeout=120)
                if frame["type"] == "error":
                    refusals.append(frame["code"])
                elif frame["type"] == "message" and frame["message"]["role"] == "assistant":
                    replies.append(frame["message"])
                elif frame["type"] == "done":
                    done.add(frame["message"])
            return replies, refusals

    replies, refusals = asyncio.run(go())
    assert len(replies) == 1 and refusals == ["quota_exhausted"] * 2
    wait_for_log(live_stack, rf"title for conversation {replies[0]['conversation']}: ")  # the worker is done
    total, stored = spent(user)
    assert total == stored > ALLOWANCE  # the admitted reply only: its title was refused, past the allowance
    assert total <= ALLOWANCE + bound_of_one_reply(live_stack)
    assert quotas.tokens_held(user.pk) == 0


def test_replies_sent_together_over_the_api_stay_within_the_allowance_and_one_bound(api, live_stack):  # noqa: F811
    user, _, client = api("programmatic")
    QuotaOverride.objects.create(user=user, tokens_per_day=ALLOWANCE)

    def ask(_):
        try:
            return client.chat.completions.create(
                model=settings.CHAT_MODEL, messages=[{"role": "user", "content": ASK}], max_tokens=NEW_TOKENS
            )
        except openai.RateLimitError as exc:
            return exc.body["code"]

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(ask, range(3)))
    answered = [o for o in outcomes if not isinstance(o, str)]
    assert len(answered) == 1 and sorted(o for o in outcomes if isinstance(o, str)) == ["insufficient_quota"] * 2
    total, stored = spent(user)
    assert total == stored == answered[0].usage.total_tokens  # an API request gets no title
    assert total <= ALLOWANCE + bound_of_one_reply(live_stack)
    assert quotas.tokens_held(user.pk) == 0
