"""Pin, archive, folders, move, bulk archive and delete: the services, the sidebar's reads, ownership, bounds."""

import pytest
from django.test import Client

from chat.conversations import organise
from chat.conversations import selectors as conversation_selectors
from chat.errors import ChatError
from chat.models import Conversation, Folder

pytestmark = pytest.mark.django_db


def made(user, n, **fields):
    """``n`` conversations, the last made the newest."""
    return [Conversation.objects.create(owner=user, title=f"chat {i}", **fields).pk for i in range(n)]


def ids(rows):
    return [r["id"] for r in rows]


def page(user, **kw):
    return conversation_selectors.conversation_page_for_user(user=user, **kw)[0]


def test_a_pinned_conversation_comes_first_and_pinning_is_not_activity(make_user):
    user = make_user()
    a, b, c = made(user, 3)
    before = Conversation.objects.get(pk=a).updated_at
    organise.conversation_pin(user=user, conversation_id=a, pinned=True)
    assert Conversation.objects.get(pk=a).updated_at == before
    rows = page(user)
    assert ids(rows) == [a, c, b] and rows[0]["pinned"] is True and rows[1]["pinned"] is False
    organise.conversation_pin(user=user, conversation_id=a, pinned=False)
    assert ids(page(user)) == [c, b, a]


def test_paging_by_cursor_crosses_from_pinned_to_unpinned_without_loss_or_repeat(make_user, django_assert_num_queries):
    user = make_user()
    all_ids = made(user, 7)
    for pk in (all_ids[1], all_ids[4]):
        organise.conversation_pin(user=user, conversation_id=pk, pinned=True)
    seen, cursor = [], None
    while True:
        with django_assert_num_queries(1):
            rows, cursor = conversation_selectors.conversation_page_for_user(user=user, after=cursor, limit=2)
        seen += ids(rows)
        if cursor is None:
            break
    rest = [pk for pk in all_ids[::-1] if pk not in (all_ids[1], all_ids[4])]
    assert seen == [all_ids[4], all_ids[1], *rest]


def test_archived_leave_the_list_show_in_the_archived_view_and_search_still_finds_them(make_user):
    user = make_user()
    a, b, c = made(user, 3)
    assert organise.conversations_archive(user=user, conversation_ids=[a, b], archived=True) == [a, b]
    assert ids(page(user)) == [c]
    archived = page(user, archived=True)
    assert ids(archived) == [b, a] and all(r["archived"] for r in archived)
    found = page(user, query="chat")
    assert sorted(ids(found)) == sorted([a, b, c]) and {r["id"]: r["archived"] for r in found}[a] is True
    organise.conversations_archive(user=user, conversation_ids=[a], archived=False)
    assert ids(page(user)) == [c, a]


def test_folders_group_conversations_and_deleting_one_keeps_them(make_user, django_assert_num_queries):
    user = make_user()
    a, b, c = made(user, 3)
    work = organise.folder_save(user=user, name="  Work   stuff ")
    assert work.name == "Work stuff"
    organise.conversation_move(user=user, conversation_id=a, folder_id=work.pk)
    organise.conversation_move(user=user, conversation_id=b, folder_id=work.pk)
    organise.conversation_pin(user=user, conversation_id=a, pinned=True)
    # The plain list: outside any folder, or pinned (a pin keeps it on top wherever it is filed).
    assert ids(page(user)) == [a, c]
    rows = page(user, folder=work.pk)
    assert ids(rows) == [a, b] and {r["folder"] for r in rows} == {work.pk}
    organise.conversations_archive(user=user, conversation_ids=[b], archived=True)
    with django_assert_num_queries(1):
        folders = conversation_selectors.folders_for_user(user=user)
    assert folders == [{"id": work.pk, "name": "Work stuff", "count": 1}]
    organise.folder_save(user=user, folder_id=work.pk, name="Job")
    assert Folder.objects.get(pk=work.pk).name == "Job"
    assert sorted(organise.folder_delete(user=user, folder_id=work.pk)) == sorted([a, b])
    assert Conversation.objects.filter(pk__in=[a, b], folder=None).count() == 2  # kept, out of the folder
    organise.conversation_move(user=user, conversation_id=c, folder_id=None)


def test_folder_names_are_unique_per_person_and_bounded(make_user, settings):
    settings.CHAT_MAX_FOLDERS = 2
    user, other = make_user(), make_user("bob")
    organise.folder_save(user=user, name="Work")
    organise.folder_save(user=other, name="Work")  # another person's names are theirs
    with pytest.raises(ChatError) as taken:
        organise.folder_save(user=user, name="Work")
    assert taken.value.code == "name_taken" and "Work" in taken.value.detail
    with pytest.raises(ChatError) as taken:  # whatever the case: "Work" and "work" would look like one twice
        organise.folder_save(user=user, name="WORK")
    assert taken.value.code == "name_taken"
    home = organise.folder_save(user=user, name="Home")
    with pytest.raises(ChatError) as renamed:
        organise.folder_save(user=user, folder_id=home.pk, name="work")
    assert renamed.value.code == "name_taken"
    assert organise.folder_save(user=user, folder_id=home.pk, name="HOME").name == "HOME"  # its own, in capitals
    with pytest.raises(ChatError) as full:
        organise.folder_save(user=user, name="Third")
    assert full.value.code == "too_many_folders" and "2" in full.value.detail
    for bad, code in (("   ", "empty"), ("x" * 61, "too_long")):
        with pytest.raises(ChatError) as refused:
            organise.folder_save(user=other, name=bad)
        assert refused.value.code == code
    assert Folder.objects.filter(owner=user).count() == 2


def test_another_persons_conversations_and_folders_are_refused_and_untouched(make_user):
    alice, bob = make_user(), make_user("bob")
    (mine,) = made(alice, 1)
    (theirs,) = made(bob, 1)
    their_folder = organise.folder_save(user=bob, name="Bob's")
    my_folder = organise.folder_save(user=alice, name="Mine")
    attempts = [
        lambda: organise.conversation_pin(user=alice, conversation_id=theirs, pinned=True),
        lambda: organise.conversations_archive(user=alice, conversation_ids=[mine, theirs], archived=True),
        lambda: organise.conversations_delete(user=alice, conversation_ids=[mine, theirs]),
        lambda: organise.conversation_move(user=alice, conversation_id=theirs, folder_id=my_folder.pk),
        lambda: organise.conversation_move(user=alice, conversation_id=mine, folder_id=their_folder.pk),
        lambda: organise.folder_save(user=alice, folder_id=their_folder.pk, name="Taken over"),
        lambda: organise.folder_delete(user=alice, folder_id=their_folder.pk),
    ]
    for attempt in attempts:
        with pytest.raises(ChatError) as refused:
            attempt()
        assert refused.value.code == "not_found" and "not yours" in refused.value.detail
    row = Conversation.objects.get(pk=mine)  # a list with one foreign id changes none of them
    assert (row.archived_at, row.folder_id, row.pinned) == (None, None, False)
    theirs_row = Conversation.objects.get(pk=theirs)
    assert (theirs_row.pinned, theirs_row.folder_id) == (False, None)
    assert Folder.objects.get(pk=their_folder.pk).name == "Bob's"
    assert ids(page(alice, folder=their_folder.pk)) == []  # another's folder reads as empty


def test_bulk_delete_deletes_each_and_bulk_is_bounded(make_user):
    user = make_user()
    a, b, c = made(user, 3)
    assert organise.conversations_delete(user=user, conversation_ids=[a, b, a]) == [a, b]
    assert list(Conversation.objects.filter(owner=user).values_list("pk", flat=True)) == [c]
    with pytest.raises(ChatError) as empty:
        organise.conversations_archive(user=user, conversation_ids=[], archived=True)
    assert empty.value.code == "empty"
    with pytest.raises(ChatError) as many:
        organise.conversations_archive(user=user, conversation_ids=list(range(1, 102)), archived=True)
    assert many.value.code == "too_many_selected"


def test_api_conversations_are_left_out_unless_asked_for_and_marked(make_user):
    user = make_user()
    (chat,) = made(user, 1)
    (api,) = made(user, 1, source="api")
    assert ids(page(user)) == [chat]
    rows = page(user, with_api=True)
    assert ids(rows) == [api, chat] and rows[0]["source"] == "api"
    assert ids(page(user, query="chat")) == [chat]
    assert sorted(ids(page(user, query="chat", with_api=True))) == sorted([chat, api])


def test_the_json_list_takes_the_views_and_lists_folders_on_the_first_page(make_user, django_assert_num_queries):
    user = make_user()
    made(user, 3)
    (api,) = made(user, 1, source="api")
    work = organise.folder_save(user=user, name="Work")
    client = Client()
    client.force_login(user)
    data = client.get("/conversations/").json()
    assert [f["name"] for f in data["folders"]] == ["Work"] and len(data["conversations"]) == 3
    assert api in ids(client.get("/conversations/?api=1").json()["conversations"])
    assert client.get(f"/conversations/?folder={work.pk}").json()["conversations"] == []
    for bad in ("x", "0", "²", "-1", str(2**63)):
        assert client.get("/conversations/", {"folder": bad}).json()["error"]["code"] == "bad_id", bad
    assert client.get("/conversations/?archived=1").json()["conversations"] == []
    # A cursor of the release before pins still pages.
    rows, _ = conversation_selectors.conversation_page_for_user(user=user, limit=1)
    old = f"{rows[0]['updated_at'].isoformat()}_{rows[0]['id']}"
    assert len(client.get("/conversations/", {"after": old}).json()["conversations"]) == 2


def test_the_data_download_holds_the_persons_folders_and_each_conversations_place(make_user):
    import json

    from chat.accounts.personal_data import personal_data_chunks

    user = make_user()
    (a,) = made(user, 1)
    work = organise.folder_save(user=user, name="Work")
    organise.folder_save(user=make_user("bob"), name="Bob's")
    organise.conversation_move(user=user, conversation_id=a, folder_id=work.pk)
    organise.conversation_pin(user=user, conversation_id=a, pinned=True)
    data = json.loads("".join(personal_data_chunks(user=user)))
    assert [f["name"] for f in data["folders"]] == ["Work"]
    (conversation,) = data["conversations"]
    assert (conversation["folder_id"], conversation["pinned"], conversation["archived_at"]) == (work.pk, True, None)


def test_the_json_lists_queries_do_not_grow_with_its_rows_or_folders(make_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = make_user()
    client = Client()
    client.force_login(user)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/conversations/").status_code == 200
        return len(captured)

    made(user, 2)
    organise.folder_save(user=user, name="One")
    few = queries()
    ids_ = made(user, 28)
    for n in range(5):
        folder = organise.folder_save(user=user, name=f"Folder {n}")
        organise.conversation_move(user=user, conversation_id=ids_[n], folder_id=folder.pk)
        organise.conversation_pin(user=user, conversation_id=ids_[n + 10], pinned=True)
    assert queries() == few
