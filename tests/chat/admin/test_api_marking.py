"""API traffic in the review panel: the conversation list's source column says API, the key's name and whether
the text was kept; the list filters on both; the transcript page names the API request's own end user."""

import re

import pytest
from django.urls import reverse

from chat.api import services
from chat.models import Conversation
from tests.chat.admin.conftest import make_chat

pytestmark = pytest.mark.django_db
LIST = reverse("admin:chat_conversation_changelist")


@pytest.fixture
def three(people):
    """A browser chat, an API conversation whose key keeps text, and one whose key keeps none."""
    chat = make_chat(people.owner, title="from the browser")
    keeper = services.api_key_create(owner=people.owner, name="nightly script").key
    private = services.api_key_create(owner=people.owner, name="cron job", store_conversations=False).key
    kept = Conversation.objects.create(
        owner=people.owner,
        title="kept call",
        source="api",
        api_key=keeper,
        api_key_name=keeper.name,
        api_user="end-user-42",
    )
    hidden = Conversation.objects.create(
        owner=people.owner, title="", source="api", api_key=private, api_key_name=private.name, content_kept=False
    )
    return chat, kept, hidden


def _rows(page: str) -> dict[int, str]:
    """Conversation id → its row's source cell, from the change list's HTML."""
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S):
        link = re.search(r"/admin/chat/conversation/(\d+)/change/", row)
        cell = re.search(r'<td class="field-origin">(.*?)</td>', row, flags=re.S)
        if link and cell:
            rows[int(link.group(1))] = cell.group(1).strip()
    return rows


def test_the_list_shows_where_each_conversation_came_from_and_filters_on_it(people, client_for, three):
    chat, kept, hidden = three
    client = client_for(people.reviewer)
    assert _rows(client.get(LIST).content.decode()) == {
        chat.pk: "chat",
        kept.pk: "API · nightly script",
        hidden.pk: "API · cron job · text not kept",
    }
    assert set(_rows(client.get(LIST, {"source__exact": "api"}).content.decode())) == {kept.pk, hidden.pk}
    assert set(_rows(client.get(LIST, {"source__exact": "chat"}).content.decode())) == {chat.pk}
    assert set(_rows(client.get(LIST, {"content_kept__exact": "0"}).content.decode())) == {hidden.pk}
    assert set(_rows(client.get(LIST, {"content_kept__exact": "1"}).content.decode())) == {chat.pk, kept.pk}
    queue = client.get(reverse("admin:chat_reviewqueue_changelist")).content.decode()
    assert "API · cron job · text not kept" in queue  # the review queue says it too


def test_the_transcript_page_names_the_api_requests_end_user(people, client_for, three):
    chat, kept, hidden = three
    client = client_for(people.reviewer)
    page = client.get(reverse("admin:chat_conversation_change", args=[kept.pk])).content.decode()
    assert "End user (the API request" in page and "end-user-42" in page and "API · nightly script" in page
    page = client.get(reverse("admin:chat_conversation_change", args=[hidden.pk])).content.decode()
    assert "API · cron job · text not kept" in page
    page = client.get(reverse("admin:chat_conversation_change", args=[chat.pk])).content.decode()
    assert "End user (the API request" not in page  # a browser chat has no such field
