"""A reply waiting for a row is told its place: the worker's real engine (one row, a tiny random Llama) admits
people in turn, and each waiting reply's ``queued`` frame reaches its person's socket through the real consumer
and channel layer with the number of replies ahead of it; the place is bounded in rate, and /metrics shows the
waiting replies per worker and per model."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from chat.names import place_key
from chat.store import client
from chat.worker import job as worker_job
from chat.worker import runtime as worker_runtime
from chat.worker.places import PlaceNotes
from inference.loading import LoadedModel
from inference.output import Finished, Piece, Queued, RequestHandle, coalesce
from tests.helpers.support import connect, frames_until, run
from tests.helpers.worker import queued_reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_row(tiny_llama, tokenizer, settings):
    """A worker runtime whose engine has one row: every second reply waits."""
    settings.CHAT_PREFIX_CACHE_MB = 0
    settings.CHAT_MAX_BATCH = 1
    settings.CHAT_QUEUE_FRAME_MS = 0  # every change of place is sent: the test counts them
    settings.CHAT_BENCH_IGNORE_EOS = True  # the long reply runs until it is stopped
    runtime = worker_runtime.Runtime(LoadedModel("tiny-llama", tiny_llama, tokenizer, "cpu", None), background=False)
    yield runtime
    runtime.close()


async def until(condition, what: str, limit: int = 600):
    """Poll a condition of the engine (every 50 ms, at most ``limit`` times)."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def watch(cookie, message) -> tuple:
    """A socket of the reply's person showing the reply's conversation (subscribed to it)."""
    comm, connected, _ = await connect(cookie)
    assert connected
    await comm.send_json_to({"type": "subscribe", "conversation": message.conversation_id})
    await frames_until(comm, "subscribed")
    return comm


async def drain(comm) -> list[dict]:
    """Every frame the socket got until it has been quiet for a second (the test client then ends the socket)."""
    got = []
    while True:
        try:
            got.append(await comm.receive_json_from(timeout=1))
        except asyncio.TimeoutError:
            return got


def test_waiting_replies_see_their_place_and_the_person_served_least_goes_first(
    make_user, session_cookie, one_row, settings
):
    a, b = make_user("alice"), make_user("bob")
    long = queued_reply(a, "Tell me a long story", params={"max_new_tokens": 400})
    a2, a3 = queued_reply(a, "Second question"), queued_reply(a, "Third question")
    b1 = queued_reply(b, "Just one question")
    rt = one_row
    admitted: list[str] = []  # the engine's admissions, in order (its waiting list's own take)
    calls = [0]
    take = rt.engine._waiting.take

    def noting(*args, **kwargs):
        calls[0] += 1
        got = take(*args, **kwargs)
        admitted.extend(r.request_id for r in got)
        return got

    rt.engine._waiting.take = noting

    cookies = {a: session_cookie(a), b: session_cookie(b)}

    async def go():
        sockets = {m.id: await watch(cookies[owner], m) for m, owner in ((a2, a), (a3, a), (b1, b))}
        # The idle engine waits inside take (0.1 s at a time): one call of the patched take has begun before the
        # first reply is submitted, so no admission goes through a call of the original made before the patch.
        await until(lambda: calls[0] > 0, "the engine takes through the patched take")
        jobs = [asyncio.create_task(asyncio.to_thread(worker_job.ReplyJob(long, rt).run))]
        await until(lambda: rt.tokens.get(long.id, 0) > 0, "the long reply is running")
        for message in (a2, a3):
            jobs.append(asyncio.create_task(asyncio.to_thread(worker_job.ReplyJob(message, rt).run)))
            await until(lambda: rt.engine.stats()["waiting"] == len(jobs) - 1, "the reply waits")
        rt.beat()  # the worker's figures as /metrics reads them: two waiting
        waiting_then = await database_sync_to_async(figures)(rt.model)
        jobs.append(asyncio.create_task(asyncio.to_thread(worker_job.ReplyJob(b1, rt).run)))
        await until(lambda: rt.engine.stats()["waiting"] == 3, "B's reply waits")
        queued = await frames_until(sockets[b1.id], "queued")
        # A page of B loaded now (a reload) is told B's place at once, after the reply's snapshot.
        reloaded, connected, _ = await connect(cookies[b])
        assert connected
        await reloaded.send_json_to({"type": "subscribe", "conversation": b1.conversation_id})
        on_reload = [f for f in await frames_until(reloaded, "subscribed") if f["type"] in ("message", "queued")]
        await reloaded.disconnect()
        rt.engine.cancel(str(long.id))  # the long reply stops: its row frees
        await asyncio.gather(*jobs)
        return {mid: await drain(comm) for mid, comm in sockets.items()}, queued[-1], waiting_then, on_reload

    frames, b_first, waiting_then, on_reload = run(go(), timeout=120)
    assert [f["type"] for f in on_reload] == ["message", "queued"] and on_reload[1] == b_first
    assert on_reload[0]["message"]["content"] == ""
    # Once running (or ended), a reply keeps no place: a page loaded later shows none.
    assert not client().exists(*(place_key(m.id) for m in (a2, a3, b1)))
    # A socket of A also gets A's other replies' frames today (a tab that does not show them ignores them): each
    # socket is read for its own reply.
    mine = {mid: [f for f in got if f.get("message") == mid] for mid, got in frames.items()}
    places = {mid: [f["ahead"] for f in got if f["type"] == "queued"] for mid, got in mine.items()}
    # B arrived last, behind A's two, but A was being served: B was next in line, and A's moved back one.
    assert b_first == {"type": "queued", "message": b1.id, "conversation": b1.conversation_id, "ahead": 0}
    assert places == {b1.id: [], a2.id: [0, 1, 0], a3.id: [1, 2, 1, 0]}
    assert admitted == [str(long.id), str(b1.id), str(a2.id), str(a3.id)]
    for got in mine.values():  # the places come before the reply's text, never after
        kinds = [f["type"] for f in got]
        assert "delta" in kinds and "queued" not in kinds[kinds.index("delta") :]
    assert set(Message.objects.filter(pk__in=[a2.id, a3.id, b1.id]).values_list("status", flat=True)) == {"complete"}
    assert waiting_then == (2.0, 2.0)


def figures(model: str) -> tuple[float, float]:
    """The waiting gauges /metrics exports for the model's live workers and for the model."""
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    text = Client().get("/metrics").content.decode()
    got = {f.name: f.samples for f in text_string_to_metric_families(text)}
    workers = sum(s.value for s in got["chat_worker_batch_waiting"] if s.labels["model"] == model)
    together = sum(s.value for s in got["chat_model_batch_waiting"] if s.labels["model"] == model)
    return workers, together


def test_places_are_sent_when_they_change_and_at_most_once_per_interval():
    sent, now = [], [0.0]
    notes = PlaceNotes(sent.append, interval_s=0.5, clock=lambda: now[0])
    assert [notes.update(n) for n in (4, 4, 3)] == [True, False, False]  # the first at once; then bounded
    now[0] = 0.6
    assert [notes.update(n) for n in (2, 1, 0)] == [True, False, True]  # the front of the line: at once
    assert sent == [4, 2, 0]


def test_a_place_held_back_goes_out_when_the_line_then_stands_still():
    """Places 5 then 4 at once: 4 is held back (within the interval); nothing else happens for a while — the line
    is not moving — and 4 must still reach the page before the text starts."""
    handle = RequestHandle("r", engine=None)
    handle.put(Queued(5))
    handle.put(Queued(4))
    sent = []
    notes = PlaceNotes(sent.append, interval_s=0.05)
    later = threading.Timer(0.5, lambda: [handle.put(Piece("Hi", 1)), handle.put(Finished("stop", "Hi", 3, 1))])
    later.start()
    try:
        for chunk in coalesce(handle, flush_interval=0.01, requeue_s=0.1):
            if chunk.queued is not None:
                notes.update(chunk.queued)
            elif chunk.text:
                break  # the reply started
    finally:
        later.join()
    assert sent == [5, 4]


def test_a_place_that_cannot_be_published_does_not_stop_the_reply():
    def broken(ahead):
        raise OSError("Redis away")

    assert PlaceNotes(broken, interval_s=0).update(3) is False
