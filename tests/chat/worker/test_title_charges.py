"""The model's title is a generation charged to the conversation's owner, reserved the way a reply is: a person
whose first reply used their day up gets no title (and no charge past it), and a person deleted while their title
is being written is charged nothing — no counter of theirs comes back (chat/worker/job.py, make_title). A real
engine over a tiny random Llama, the real Redis and database."""

import pytest

from chat.accounts import services as account_services
from chat.conversations import services as conversation_services
from chat.limits import quotas
from chat.models import Conversation, Message, QuotaOverride
from chat.names import gone_key, reserved_key
from chat.replies import services as reply_services
from chat.store import client
from chat.worker import job as worker_job
from chat.worker import runtime as worker_runtime
from chat.worker import tasks

pytestmark = pytest.mark.django_db(transaction=True)
FIRST = "Tell me about lighthouses"


def first_reply(user):
    return conversation_services.message_send(
        user=user, conversation_id=None, content=FIRST, params={"max_new_tokens": 12}
    ).assistant_message


def requests_of(rt, monkeypatch, before=None) -> list:  # noqa: F811
    """Every request the engine is given (``before`` runs first, as the request arrives)."""
    submitted = []
    real_submit = rt.engine.submit

    def submit(request):
        submitted.append(request)
        if before is not None:
            before(request)
        return real_submit(request)

    monkeypatch.setattr(rt.engine, "submit", submit)
    return submitted


def test_a_person_whose_first_reply_used_their_day_up_gets_no_title_and_no_charge_past_it(
    make_user,
    rt,  # noqa: F811
    monkeypatch,
):
    user = make_user()
    QuotaOverride.objects.create(user=user, tokens_per_day=5)  # admitted (0 of 5 used); the reply costs more
    message = first_reply(user)
    monkeypatch.setattr(worker_runtime, "current", lambda: rt)
    submitted = requests_of(rt, monkeypatch)
    tasks.generate_reply.run(message.id)
    stored = Message.objects.get(pk=message.id)
    assert stored.status == "complete" and stored.prompt_tokens + stored.completion_tokens > 5
    assert [r.request_id for r in submitted] == [str(message.id)]  # no title was asked for
    assert Conversation.objects.get(pk=message.conversation_id).title == FIRST
    assert quotas.tokens_used_today(user.pk) == stored.prompt_tokens + stored.completion_tokens
    assert quotas.tokens_held(user.pk) == 0


def test_a_person_deleted_while_their_title_is_written_is_charged_nothing(
    make_user,
    rt,  # noqa: F811
    monkeypatch,
):
    user = make_user()
    message = reply_services.reply_claim(message_id=first_reply(user).id)
    job = worker_job.ReplyJob(message, rt)
    job.run()
    assert job.wants_title() and quotas.tokens_used_today(user.pk) > 0

    def delete_them(request):
        if request.request_id.startswith("title-"):  # the title's prompt is built: the person goes now
            account_services.account_delete(user_id=user.pk)

    submitted = requests_of(rt, monkeypatch, before=delete_them)
    worker_job.make_title(job)
    assert [r.request_id for r in submitted] == [f"title-{message.id}"]  # the title was generated
    r = client()
    assert not [*r.scan_iter(f"chat:tokens:{user.pk}:*")] and not r.exists(reserved_key(user.pk))
    assert r.exists(gone_key(user.pk))
