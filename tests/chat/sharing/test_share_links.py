"""Share links (chat/sharing/) over the real database and Django's test client: only the owner makes or revokes
one; anyone with the link reads the snapshot without signing in, and nothing written later; the public page's
headers (noindex, its CSP, no referrer, no cache); the token; the bounds; a deletion ends the link."""

import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from chat.accounts import services as account_services
from chat.conversations import organise
from chat.conversations import services as conversation_services
from chat.errors import ErrorCode
from chat.models import Conversation, Message, ShareLink

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script> <img src=x onerror="alert(1)"> [click](javascript:alert(2))'


def conversation_of(user, *turns, **fields) -> Conversation:
    """A conversation whose shown branch is ``turns`` (user, reply, user, reply, …), every reply finished."""
    conversation = Conversation.objects.create(owner=user, title="Trip to Lisbon", **fields)
    parent = None
    for i, text in enumerate(turns):
        role = Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT
        parent = Message.objects.create(conversation=conversation, parent=parent, role=role, content=text)
    return conversation


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def share(client, conversation_id) -> dict:
    response = client.post(reverse("chat:conversation-shares", args=[conversation_id]))
    assert response.status_code == 201, response.content
    return response.json()["share"]


def public(url: str):
    """The link opened by someone who is not signed in."""
    return Client().get(url)


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def test_the_owner_shares_and_anyone_reads_the_branch_without_signing_in(alice):
    conversation = conversation_of(alice, "Where should I eat?", "Try **Time Out Market**.")
    link = share(signed_in(alice), conversation.pk)
    assert link["messages"] == 2 and link["title"] == "Trip to Lisbon"

    page = public(link["url"])
    assert page.status_code == 200
    text = page.content.decode()
    assert "Where should I eat?" in text and "Try **Time Out Market**." in text  # the Markdown, rendered by script
    assert "Trip to Lisbon" in text


def test_the_public_page_is_noindex_under_a_strict_policy_and_never_cached(alice):
    link = share(signed_in(alice), conversation_of(alice, "hi", "hello").pk)
    page = public(link["url"])
    assert "noindex" in page["X-Robots-Tag"]
    assert '<meta name="robots" content="noindex, nofollow">' in page.content.decode()
    policy = dict(part.strip().split(" ", 1) for part in page["Content-Security-Policy"].split(";") if part.strip())
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'" and policy["font-src"] == "'self'"
    assert policy["connect-src"] == "'none'" and policy["form-action"] == "'none'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert "unsafe" not in page["Content-Security-Policy"]
    assert page["Referrer-Policy"] == "no-referrer" and page["Cache-Control"] == "no-store"


def test_markup_in_a_reply_or_a_message_reaches_the_page_as_text(alice):
    link = share(signed_in(alice), conversation_of(alice, HOSTILE, HOSTILE).pk)
    text = public(link["url"]).content.decode()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert text.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 2


def test_a_message_written_after_sharing_is_not_shown(alice):
    conversation = conversation_of(alice, "first question", "first answer")
    link = share(signed_in(alice), conversation.pk)

    sent = conversation_services.message_send(user=alice, conversation_id=conversation.pk, content="later question")
    Message.objects.filter(pk=sent.assistant_message.pk).update(status=Message.Status.COMPLETE, content="later answer")
    # An edit of the first question puts another branch on show: the link still shows the one it was made from.
    edited = conversation_services.message_edit(
        user=alice, message_id=conversation.messages.order_by("id").first().pk, content="edited question"
    )
    Message.objects.filter(pk=edited.assistant_message.pk).update(status=Message.Status.COMPLETE, content="new")

    text = public(link["url"]).content.decode()
    assert "first question" in text and "first answer" in text
    assert "later" not in text and "edited question" not in text


def test_a_reply_still_being_written_is_left_out_of_the_snapshot(alice):
    conversation = conversation_of(alice, "done question", "done answer")
    sent = conversation_services.message_send(user=alice, conversation_id=conversation.pk, content="open question")
    Message.objects.filter(pk=sent.assistant_message.pk).update(status=Message.Status.STREAMING, content="half a")
    link = share(signed_in(alice), conversation.pk)
    assert link["messages"] == 3
    Message.objects.filter(pk=sent.assistant_message.pk).update(status=Message.Status.COMPLETE, content="half a reply")
    text = public(link["url"]).content.decode()
    assert "open question" in text and "half a" not in text


def test_another_persons_conversation_and_link_are_refused_with_a_sentence(alice, bob):
    conversation = conversation_of(alice, "private", "reply")
    as_bob = signed_in(bob)
    for method in (as_bob.post, as_bob.get):
        response = method(reverse("chat:conversation-shares", args=[conversation.pk]))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == ErrorCode.NOT_FOUND
        assert "not yours" in response.json()["error"]["detail"]
    assert not ShareLink.objects.exists()

    link = share(signed_in(alice), conversation.pk)
    response = as_bob.post(reverse("chat:share-revoke", args=[link["id"]]), HTTP_ACCEPT="application/json")
    assert response.status_code == 404 and response.json()["error"]["code"] == ErrorCode.NOT_FOUND
    assert public(link["url"]).status_code == 200  # still alive: bob could not revoke it
    assert link["url"] not in as_bob.get(reverse("account")).content.decode()


def test_signed_out_people_cannot_make_links_and_a_post_needs_the_csrf_token(alice):
    conversation = conversation_of(alice, "q", "a")
    assert Client().post(reverse("chat:conversation-shares", args=[conversation.pk])).status_code == 302  # log in
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(reverse("chat:conversation-shares", args=[conversation.pk])).status_code == 403
    assert not ShareLink.objects.exists()


def test_a_revoked_or_unknown_link_says_it_is_gone(alice):
    client = signed_in(alice)
    conversation = conversation_of(alice, "q", "a")
    link = share(client, conversation.pk)
    listed = client.get(reverse("chat:conversation-shares", args=[conversation.pk])).json()["shares"]
    assert [s["id"] for s in listed] == [link["id"]]

    response = client.post(reverse("chat:share-revoke", args=[link["id"]]), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    for url in (link["url"], link["url"].replace(link["url"].rstrip("/").rsplit("/", 1)[1], "not-a-real-token")):
        gone = public(url)
        assert gone.status_code == 404
        text = gone.content.decode()
        assert f'data-code="{ErrorCode.SHARE_GONE}"' in text and "revoked it" in text
        assert "noindex" in gone["X-Robots-Tag"] and '<meta name="robots" content="noindex' in text
        assert 'class="msg' not in text  # none of the conversation
    assert client.get(reverse("chat:conversation-shares", args=[conversation.pk])).json()["shares"] == []


def test_the_account_page_lists_the_links_and_revokes_one_without_script(alice):
    client = signed_in(alice)
    link = share(client, conversation_of(alice, "q", "a").pk)
    page = client.get(reverse("account")).content.decode()
    assert link["url"] in page and "Trip to Lisbon" in page
    assert reverse("chat:share-revoke", args=[link["id"]]) in page

    response = client.post(reverse("chat:share-revoke", args=[link["id"]]))
    assert response.status_code == 302 and response["Location"].endswith("#shares")
    assert link["url"] not in client.get(reverse("account")).content.decode()
    assert public(link["url"]).status_code == 404


def test_the_token_is_long_random_and_not_the_conversation_id(alice):
    client = signed_in(alice)
    conversation = conversation_of(alice, "q", "a")
    links = [share(client, conversation.pk) for _ in range(3)]
    tokens = [link["url"].rstrip("/").rsplit("/", 1)[1] for link in links]
    assert len(set(tokens)) == 3
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 random bytes, URL-safe base64
        assert str(conversation.pk) != token and f"/{conversation.pk}/" not in links[0]["url"]
    assert public(reverse("chat:shared", args=[str(conversation.pk)])).status_code == 404


def test_live_links_and_new_links_an_hour_are_bounded(alice, settings):
    settings.CHAT_SHARE_LINKS_MAX = 2
    settings.CHAT_SHARE_LINKS_PER_HOUR = 3
    client = signed_in(alice)
    conversation = conversation_of(alice, "q", "a")
    url = reverse("chat:conversation-shares", args=[conversation.pk])
    first, _second = share(client, conversation.pk), share(client, conversation.pk)
    refused = client.post(url)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == ErrorCode.TOO_MANY_SHARE_LINKS
    client.post(reverse("chat:share-revoke", args=[first["id"]]), HTTP_ACCEPT="application/json")
    share(client, conversation.pk)  # room again
    client.post(reverse("chat:share-revoke", args=[first["id"] + 1]), HTTP_ACCEPT="application/json")
    limited = client.post(url)  # three made this hour, a revoked one included
    assert limited.status_code == 429 and limited.json()["error"]["code"] == ErrorCode.RATE_LIMITED
    assert 0 < int(limited["Retry-After"]) <= 3600 and "minutes" in limited.json()["error"]["detail"]


def test_nothing_to_share_is_said_so(alice):
    client = signed_in(alice)
    untold = conversation_of(alice, "", "", source=Conversation.Source.API, content_kept=False)
    empty = Conversation.objects.create(owner=alice)
    for conversation in (untold, empty):
        response = client.post(reverse("chat:conversation-shares", args=[conversation.pk]))
        assert response.status_code == 409 and response.json()["error"]["code"] == ErrorCode.NOTHING_TO_SHARE
    # An API conversation that keeps its text may be shared like any other.
    kept = conversation_of(alice, "api question", "api answer", source=Conversation.Source.API)
    assert "api answer" in public(share(client, kept.pk)["url"]).content.decode()


def test_deleting_the_conversation_or_the_account_ends_the_link(alice, bob):
    conversation = conversation_of(alice, "q", "a")
    link = share(signed_in(alice), conversation.pk)
    organise.conversation_delete(user=alice, conversation_id=conversation.pk)
    assert public(link["url"]).status_code == 404

    other = share(signed_in(bob), conversation_of(bob, "q", "a").pk)
    account_services.account_delete(user_id=bob.pk)
    assert public(other["url"]).status_code == 404
    assert not ShareLink.objects.filter(owner_id=bob.pk).exists()


def test_a_deactivated_owners_links_are_gone(alice):
    link = share(signed_in(alice), conversation_of(alice, "q", "a").pk)
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    assert public(link["url"]).status_code == 404


def test_the_data_download_holds_the_persons_links_revoked_ones_too(alice, bob):
    import json

    client = signed_in(alice)
    conversation = conversation_of(alice, "q", "a")
    first, second = share(client, conversation.pk), share(client, conversation.pk)
    share(signed_in(bob), conversation_of(bob, "q", "a").pk)
    client.post(reverse("chat:share-revoke", args=[first["id"]]), HTTP_ACCEPT="application/json")
    data = json.loads(b"".join(client.get(reverse("account-data")).streaming_content))
    links = {link["id"]: link for link in data["share_links"]}
    assert sorted(links) == [first["id"], second["id"]]
    assert links[first["id"]]["revoked_at"] is not None and links[second["id"]]["revoked_at"] is None
    assert second["url"].endswith(f"/s/{links[second['id']]['token']}/")
    assert len(links[second["id"]]["message_ids"]) == 2


def test_a_head_request_reads_the_page_like_a_get(alice):
    link = share(signed_in(alice), conversation_of(alice, "q", "a").pk)
    assert Client().head(link["url"]).status_code == 200


def test_a_link_too_long_to_be_a_token_gets_the_same_page(alice):
    gone = public(reverse("chat:shared", args=["x" * 5000]))
    assert gone.status_code == 404 and ErrorCode.SHARE_GONE in gone.content.decode()


def test_a_stopped_reply_is_marked_and_a_failed_one_without_text_left_out(alice):
    conversation = conversation_of(alice, "q1", "cut short", "q2", "")
    Message.objects.filter(conversation=conversation, content="cut short").update(status=Message.Status.STOPPED)
    Message.objects.filter(conversation=conversation, content="").update(status=Message.Status.FAILED, error="boom")
    link = share(signed_in(alice), conversation.pk)
    assert link["messages"] == 3
    text = public(link["url"]).content.decode()
    assert 'class="msg assistant stopped"' in text and "boom" not in text and "failed" not in text


def test_a_reply_continued_after_sharing_is_shown_as_it_was_when_shared(alice):
    """Continue grows the same row (the reply cut at its length bound goes on), so the link keeps each message's
    length then: what Continue wrote later is not shared."""
    from chat.conversations.continuation import message_continue

    conversation = conversation_of(alice, "tell me a story", "Once upon a time")
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)
    Message.objects.filter(pk=reply.pk).update(
        finish_reason=Message.FinishReason.LENGTH, model_name=settings.CHAT_DEFAULT_MODEL
    )
    link = share(signed_in(alice), conversation.pk)

    message_continue(user=alice, message_id=reply.pk)
    # What the worker does as the continuation streams and ends: the same row, longer.
    Message.objects.filter(pk=reply.pk).update(
        status=Message.Status.COMPLETE, finish_reason="stop", content="Once upon a time there was a secret dragon."
    )

    text = public(link["url"]).content.decode()
    assert "Once upon a time" in text and "secret dragon" not in text
    assert (
        "secret dragon"
        in signed_in(alice).get(reverse("chat:conversation-detail", args=[conversation.pk])).content.decode()
    )
