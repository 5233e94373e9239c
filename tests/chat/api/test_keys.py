"""API keys (services, authentication, the settings page, the command, the admin) and API conversations whose
key keeps no text. The API's requests themselves are tested through the openai client in tests/chat/api/."""

import io
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from chat.api import services as api_services
from chat.api.auth import authenticate
from chat.api.errors import ApiError
from chat.conversations import feedback
from chat.conversations import services as conversation_services
from chat.errors import ChatError
from chat.limits import quotas
from chat.models import ApiKey, Conversation, Message
from chat.replies import services as reply_services
from chat.review import dataset

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_allowances():
    """These tests' replies must not count against the next module's users (ids repeat after rollbacks)."""
    from tests.chat.api.conftest import forget_allowances

    forget_allowances()
    yield
    forget_allowances()


TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "secret plan A"},
    {"role": "assistant", "content": "noted"},
    {"role": "user", "content": "secret plan B"},
]


def test_a_key_is_stored_hashed_and_authenticates_by_prefix(make_user):
    new = api_services.api_key_create(owner=make_user(), name="script")
    assert new.plaintext.startswith(f"sk-{new.key.prefix}-") and len(new.plaintext) > 50
    stored = ApiKey.objects.get(pk=new.key.pk)
    assert new.plaintext.split("-", 2)[2] not in str(stored.__dict__)  # the secret is nowhere in the row
    assert stored.secret_hash == api_services.api_key_secret_hash(new.plaintext.split("-", 2)[2])
    assert authenticate(f"Bearer {new.plaintext}").pk == new.key.pk
    assert ApiKey.objects.get(pk=new.key.pk).last_used_at is not None


@pytest.mark.parametrize(
    "header", [None, "", "Basic abc", "Bearer ", "Bearer sk-", "Bearer sk-000000000000-x", "Bearer nonsense"]
)
def test_missing_and_malformed_keys_are_401(make_user, header):
    api_services.api_key_create(owner=make_user(), name="script")
    with pytest.raises(ApiError) as refused:
        authenticate(header)
    assert refused.value.status == 401 and refused.value.code == "invalid_api_key"


def test_wrong_secret_revoked_key_and_inactive_owner_are_401(make_user):
    user = make_user()
    new = api_services.api_key_create(owner=user, name="script")
    for header in (f"Bearer {new.plaintext[:-1]}{'A' if new.plaintext[-1] != 'A' else 'B'}",):
        with pytest.raises(ApiError):
            authenticate(header)
    user.is_active = False
    user.save()
    with pytest.raises(ApiError, match="disabled"):
        authenticate(f"Bearer {new.plaintext}")
    user.is_active = True
    user.save()
    api_services.api_key_revoke(owner=user, key_id=new.key.pk)
    with pytest.raises(ApiError, match="revoked"):
        authenticate(f"Bearer {new.plaintext}")


def test_revoking_a_key_stops_its_replies_still_queued_or_streaming_and_no_others(
    make_user, monkeypatch, settings, django_capture_on_commit_callbacks
):
    from chat import events

    settings.CHAT_MAX_ACTIVE_PER_USER = 4
    cancelled = []
    monkeypatch.setattr(events, "broadcast_cancel_sync", cancelled.append)
    user = make_user()
    leaked, kept = (api_services.api_key_create(owner=user, name=n).key for n in ("leaked", "kept"))
    queued = api_services.api_completion_create(key=leaked, turns=TURNS, params={})
    streaming = api_services.api_completion_create(key=leaked, turns=TURNS, params={})
    reply_services.reply_claim(message_id=streaming.pk)
    other = api_services.api_completion_create(key=kept, turns=TURNS, params={})
    chat = conversation_services.message_send(
        user=user, conversation_id=None, content="from the browser"
    ).assistant_message
    with django_capture_on_commit_callbacks(execute=True):
        api_services.api_key_revoke(owner=user, key_id=leaked.pk)
    states = {
        m.pk: (m.status, m.stop_requested)
        for m in Message.objects.filter(pk__in=[queued.pk, streaming.pk, other.pk, chat.pk])
    }
    assert states == {
        queued.pk: ("stopped", False),
        streaming.pk: ("streaming", True),  # the worker ends it
        other.pk: ("queued", False),
        chat.pk: ("queued", False),
    }
    assert cancelled == [streaming.pk]  # every worker is told to stop the streaming one


def test_a_request_checked_before_its_key_was_revoked_stores_nothing_after(make_user):
    """The key is checked again, locked, in the transaction that stores the reply: a request that passed the
    check just before a revoke cannot store a reply the revoke's stop has already passed by."""
    user = make_user()
    key = api_services.api_key_create(owner=user, name="leaked").key  # as authenticate() gave it to the view
    api_services.api_key_revoke(owner=user, key_id=key.pk)
    with pytest.raises(ChatError) as err:
        api_services.api_completion_create(key=key, turns=TURNS, params={})
    assert err.value.code == "key_revoked" and not Conversation.objects.exists()


def test_nobody_revokes_another_persons_key_and_names_are_checked(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    key = api_services.api_key_create(owner=alice, name="a").key
    with pytest.raises(ChatError) as err:
        api_services.api_key_revoke(owner=bob, key_id=key.pk)
    assert err.value.code == "not_found" and ApiKey.objects.get(pk=key.pk).revoked_at is None
    for name in ("", "   ", "x" * 101):
        with pytest.raises(ChatError):
            api_services.api_key_create(owner=alice, name=name)


def _finish(reply, text="the answer"):
    return reply_services.reply_finish(
        message_id=reply.pk,
        content=text,
        status=Message.Status.COMPLETE,
        finish_reason=Message.FinishReason.STOP,
        prompt_tokens=30,
        completion_tokens=3,
    )


def test_an_api_request_is_a_conversation_marked_api_with_its_turns(make_user):
    user = make_user()
    key = api_services.api_key_create(owner=user, name="script").key
    reply = api_services.api_completion_create(
        key=key, turns=TURNS, params={"stop": ["\n\n"], "max_new_tokens": 9}, end_user="u-1"
    )
    conversation = reply.conversation
    assert (conversation.source, conversation.api_key_name, conversation.api_user, conversation.system_prompt) == (
        "api",
        "script",
        "u-1",
        "Be brief.",
    )
    chain = list(Message.objects.filter(conversation=conversation).values_list("role", "content", "status"))
    assert chain == [
        ("user", "secret plan A", "complete"),
        ("assistant", "noted", "complete"),
        ("user", "secret plan B", "complete"),
        ("assistant", "", "queued"),
    ]
    assert reply.params == {"stop": ["\n\n"], "max_new_tokens": 9} and reply.parent.content == "secret plan B"
    assert _finish(reply).content == "the answer"


def test_an_assistant_turn_the_caller_supplied_is_never_a_training_target(make_user):
    """A caller can put words in the model's mouth; they are marked, cannot be rated, and the dataset export
    makes no SFT transcript of that conversation and no pair with such a turn on either side."""

    user = make_user()
    key = api_services.api_key_create(owner=user, name="script").key
    reply = _finish(api_services.api_completion_create(key=key, turns=TURNS, params={}))
    supplied = Message.objects.get(conversation=reply.conversation, role="assistant", content="noted")
    assert supplied.supplied and not Message.objects.get(pk=reply.pk).supplied
    with pytest.raises(ChatError) as err:
        feedback.feedback_set(user=user, message_id=supplied.pk, rating=1)
    assert err.value.code == "not_rateable" and "program that called the API" in err.value.detail
    feedback.feedback_set(user=user, message_id=reply.pk, rating=-1)
    Message.objects.create(
        conversation=reply.conversation,
        parent=supplied.parent,
        role="assistant",
        content="a generated sibling",
        status="complete",
        is_current=False,
    )
    assert dataset.sft_records(conversation_ids=[reply.conversation_id]) == []
    pairs = dataset.pair_records(conversation_ids=[reply.conversation_id])
    assert all(supplied.pk not in (p["message"], p["chosen_message"]) for p in pairs)


def test_a_key_that_keeps_no_text_leaves_only_counts_once_the_reply_ends(make_user):
    key = api_services.api_key_create(owner=make_user(), name="private", store_conversations=False).key
    reply = api_services.api_completion_create(key=key, turns=TURNS, params={})
    conversation = reply.conversation
    assert conversation.title == "" and not conversation.content_kept
    # the worker reads the prompt while the reply runs
    assert Message.objects.get(pk=reply.parent_id).content == "secret plan B"
    final = _finish(reply)
    assert final.content == ""
    assert set(Message.objects.filter(conversation=conversation).values_list("content", flat=True)) == {""}
    conversation.refresh_from_db()
    assert conversation.system_prompt == ""
    assert (final.prompt_tokens, final.completion_tokens, final.status) == (30, 3, "complete")


def test_api_requests_count_against_the_same_active_reply_cap(make_user, settings):
    settings.CHAT_MAX_ACTIVE_PER_USER = 2
    user = make_user()
    key = api_services.api_key_create(owner=user, name="script").key
    conversation_services.message_send(user=user, conversation_id=None, content="from the browser")
    api_services.api_completion_create(key=key, turns=TURNS, params={})
    with pytest.raises(ChatError) as err:
        api_services.api_completion_create(key=key, turns=TURNS, params={})
    assert err.value.code == "too_many_active" and Conversation.objects.filter(source="api").count() == 1


def test_messages_over_the_request_bound_together_are_refused_before_anything_is_stored(make_user, settings):
    """Each message is within CHAT_MAX_MESSAGE_CHARS, their sum is not: refused as too long (the API's 400
    context_length_exceeded), no conversation and no message stored; at the bound, accepted."""
    settings.CHAT_MAX_MESSAGE_CHARS, settings.CHAT_API_MAX_REQUEST_CHARS = 100, 250
    key = api_services.api_key_create(owner=make_user(), name="script").key
    turns = [
        {"role": "system", "content": "s" * 50},
        {"role": "user", "content": "u" * 100},
        {"role": "assistant", "content": "a" * 100},
        {"role": "user", "content": "v"},
    ]
    with pytest.raises(ChatError) as err:
        api_services.api_completion_create(key=key, turns=turns, params={})
    assert err.value.code == "too_long" and err.value.detail == (
        "The messages are too long together: at most 250 characters in one request, not 251."
    )
    assert not Conversation.objects.exists() and not Message.objects.exists()
    turns[0]["content"] = "s" * 49
    assert api_services.api_completion_create(key=key, turns=turns, params={}).status == "queued"


def test_the_keys_page_shows_a_new_key_once_and_revokes(client, make_user):
    user = make_user()
    client.force_login(user)
    page = client.post("/settings/api-keys/", {"name": "laptop", "store": "on"})
    key = ApiKey.objects.get(owner=user)
    text = page.content.decode()
    plaintext = text.split('id="new-key">', 1)[1].split("<", 1)[0]
    assert page.status_code == 200 and authenticate(f"Bearer {plaintext}").pk == key.pk
    assert "no-store" in page["Cache-Control"]  # the one response that holds the key: never cached
    again = client.get("/settings/api-keys/").content.decode()
    assert plaintext not in again and f"sk-{key.prefix}-…" in again and "laptop" in again
    assert key.store_conversations
    assert client.post("/settings/api-keys/", {"name": ""}).status_code == 400
    assert client.post(f"/settings/api-keys/{key.pk}/revoke").status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert "API keys" in client.get("/").content.decode()  # linked from the chat page


def test_a_key_made_on_the_page_with_keep_text_unticked_keeps_no_text(client, make_user):
    user = make_user()
    client.force_login(user)
    page = client.post("/settings/api-keys/", {"name": "private"})  # an unticked box is not sent at all
    key = ApiKey.objects.get(owner=user)
    assert page.status_code == 200 and not key.store_conversations
    row = client.get("/settings/api-keys/").content.decode().split("private", 1)[1].split("</tr>", 1)[0]
    assert "<td>no</td>" in row  # the list's "text kept" column


def test_a_person_has_a_bounded_number_of_keys_in_use(make_user, monkeypatch):
    monkeypatch.setattr(api_services, "API_KEYS_PER_PERSON", 2)
    user = make_user()
    first = api_services.api_key_create(owner=user, name="one").key
    api_services.api_key_create(owner=user, name="two")
    with pytest.raises(ChatError) as err:
        api_services.api_key_create(owner=user, name="three")
    assert err.value.code == "too_many_keys" and "revoke one" in err.value.detail
    api_services.api_key_revoke(owner=user, key_id=first.pk)
    api_services.api_key_create(owner=user, name="three")  # a revoked key frees its place


def test_the_command_prints_the_key_alone_on_its_last_line(make_user):
    make_user("ops")
    out = io.StringIO()
    call_command("create_api_key", "ops", "--name", "cron", "--no-store", stdout=out)
    last = out.getvalue().splitlines()[-1]
    key = authenticate(f"Bearer {last}")
    assert (key.name, key.owner.username, key.store_conversations) == ("cron", "ops", False)


def test_staff_see_keys_without_their_hash_and_revoke_them(client, make_user):
    owner = make_user("owner")
    key = api_services.api_key_create(owner=owner, name="script").key
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_apikey", "change_apikey"]))
    client.force_login(staff)
    listing = client.get("/admin/chat/apikey/").content.decode()
    assert "script" in listing and key.secret_hash not in listing
    detail = client.get(f"/admin/chat/apikey/{key.pk}/change/").content.decode()
    assert key.secret_hash not in detail and f"sk-{key.prefix}-…" in detail
    assert client.post(f"/admin/chat/apikey/{key.pk}/change/", {"name": "renamed"}).status_code == 403
    client.post("/admin/chat/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None and key.name == "script"
    from django.contrib.admin.models import LogEntry

    entry = LogEntry.objects.get(object_id=str(key.pk))  # who revoked it is kept in the admin's history
    assert "Revoked the key" in entry.get_change_message()


@pytest.mark.parametrize(
    "code, detail, wait, status, retry_after",
    [
        ("too_many_active", "You already have 3 replies being written.", None, 429, "2"),
        # The number comes from the refusal itself, not from its sentence (which says something else here).
        ("rate_limited", "You have sent 5 messages in the last minute; try again in 17 s.", 16.2, 429, "17"),
        ("quota_exhausted", "You have used today's 100 tokens.", 3600.5, 429, "3601"),
        ("quota_exhausted", "You have used today's 100 tokens.", 0.01, 429, "1"),  # never 0: "now" would loop
        ("no_worker", "No model worker is running right now.", None, 503, None),
        ("not_approved", "Your account is waiting for approval.", None, 403, None),
    ],
)
def test_refusals_of_the_services_keep_their_sentence_and_get_their_status(code, detail, wait, status, retry_after):
    response = ApiError.from_chat(ChatError(code, detail, retry_after=wait)).response()
    assert response.status_code == status and response.get("Retry-After") == retry_after
    assert json.loads(response.content)["error"]["message"] == detail


def test_the_quota_refusals_carry_their_wait_as_a_number(make_user, settings):
    """What the API's Retry-After is made of: the messages-a-minute window's wait and the time to midnight,
    both as numbers on the ChatError, the sentences the browser shows unchanged."""

    settings.CHAT_MESSAGES_PER_MINUTE = 1
    user = make_user()
    allowance = quotas.allowance_for(user.pk)
    quotas.message_hit(user.pk, allowance)
    with pytest.raises(ChatError) as limited:
        quotas.message_hit(user.pk, allowance)
    assert limited.value.code == "rate_limited" and 1 <= limited.value.retry_after <= 60
    assert f"try again in {limited.value.retry_after} s." in limited.value.detail
    settings.CHAT_TOKENS_PER_DAY = 10
    quotas.tokens_count(user.pk, 10)
    with pytest.raises(ChatError) as exhausted:
        quotas.require_tokens_left(user.pk, quotas.allowance_for(user.pk))
    left = (quotas.resets_at() - timezone.now()).total_seconds()
    assert exhausted.value.code == "quota_exhausted" and abs(left - exhausted.value.retry_after) < 5
    assert "Your allowance starts again at" in exhausted.value.detail
