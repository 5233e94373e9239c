"""The prompt library: a person's own prompts (bounded, theirs alone), published prompts for everyone from staff
who may publish, the list the chat input's / reads, and the admin's published list."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from chat.errors import ChatError, ErrorCode
from chat.models import Prompt
from chat.prompts import selectors, services

pytestmark = pytest.mark.django_db


@pytest.fixture
def publisher(make_user):
    user = make_user("staff")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="publish_prompt"))
    return type(user).objects.get(pk=user.pk)  # permissions cached on the instance: read afresh


def code_of(fn, **kwargs):
    with pytest.raises(ChatError) as info:
        fn(**kwargs)
    return info.value.code


def test_create_edit_delete_and_bounds(make_user, settings):
    user = make_user()
    p = services.prompt_create(user=user, name="/Summarise", title="", text="Summarise {{text}} in {{n}} lines")
    assert (p.name, p.title) == ("summarise", "summarise")  # the slash dropped, lower case; the name as title
    assert code_of(services.prompt_create, user=user, name="summarise", title="", text="x") == ErrorCode.NAME_TAKEN
    assert code_of(services.prompt_create, user=user, name="two words", title="", text="x") == ErrorCode.INVALID_NAME
    assert code_of(services.prompt_create, user=user, name="empty", title="", text="  ") == ErrorCode.EMPTY
    settings.CHAT_PROMPT_MAX_CHARS = 10
    assert code_of(services.prompt_create, user=user, name="long", title="", text="x" * 11) == ErrorCode.TOO_LONG
    settings.CHAT_PROMPT_MAX_CHARS = 100
    settings.CHAT_PROMPTS_PER_PERSON = 2
    services.prompt_create(user=user, name="second", title="Second", text="two")
    assert code_of(services.prompt_create, user=user, name="third", title="", text="3") == ErrorCode.TOO_MANY_PROMPTS
    services.prompt_update(user=user, prompt_id=p.pk, name="sum", title="Sum up", text="Sum up {{text}}")
    assert Prompt.objects.get(pk=p.pk).text == "Sum up {{text}}"
    services.prompt_delete(user=user, prompt_id=p.pk)
    assert [x.name for x in selectors.prompts_of(user=user)] == ["second"]


def test_a_person_never_reads_or_changes_another_persons_prompt(make_user):
    ana, bob = make_user("ana"), make_user("bob")
    p = services.prompt_create(user=ana, name="secret", title="Mine", text="ana's words")
    assert code_of(services.prompt_update, user=bob, prompt_id=p.pk, name="x", title="", text="y") == "not_found"
    assert code_of(services.prompt_delete, user=bob, prompt_id=p.pk) == ErrorCode.NOT_FOUND
    assert selectors.prompts_for_input(user=bob) == []
    client = Client()
    client.force_login(bob)
    assert client.get(f"/settings/prompts/{p.pk}/").status_code == 404
    assert client.post(f"/settings/prompts/{p.pk}/", {"name": "x", "text": "y"}).status_code == 404
    assert client.post(f"/settings/prompts/{p.pk}/delete").status_code == 404
    assert "ana's words" not in client.get("/settings/prompts/").content.decode()
    assert client.get("/settings/prompts/list.json").json() == {"prompts": []}
    assert Prompt.objects.get(pk=p.pk).text == "ana's words"


def test_only_staff_with_the_permission_publish_and_a_persons_own_name_wins(make_user, publisher):
    ana = make_user("ana")
    assert (
        code_of(services.prompt_create, user=ana, name="x", title="", text="y", published=True) == ErrorCode.FORBIDDEN
    )
    shared = services.prompt_create(user=publisher, name="review", title="Code review", text="Review {{code}}",
                                    published=True)  # fmt: skip
    services.prompt_create(user=publisher, name="haiku", title="Haiku", text="A haiku about {{topic}}", published=True)
    services.prompt_create(user=publisher, name="draft", title="Not shared", text="staff's own")
    assert selectors.prompts_for_input(user=ana) == [
        {"name": "haiku", "title": "Haiku", "text": "A haiku about {{topic}}", "shared": True, "mine": False},
        {"name": "review", "title": "Code review", "text": "Review {{code}}", "shared": True, "mine": False},
    ]
    services.prompt_create(user=ana, name="review", title="My review", text="Be gentle with {{code}}")
    assert [(p["name"], p["title"], p["mine"]) for p in selectors.prompts_for_input(user=ana)] == [
        ("haiku", "Haiku", False),
        ("review", "My review", True),
    ]
    # Changing what everyone sees takes the permission: the owner who lost it may no longer edit it.
    publisher.user_permissions.clear()
    publisher = type(publisher).objects.get(pk=publisher.pk)
    assert (
        code_of(services.prompt_update, user=publisher, prompt_id=shared.pk, name="review", title="", text="z")
        == ErrorCode.FORBIDDEN
    )


def test_the_pages_forms_and_the_json_list(make_user):
    user = make_user()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get("/settings/prompts/")
    assert page.status_code == 200 and "No prompts yet." in page.content.decode()
    assert "Publish to everyone" not in page.content.decode()
    token = str(page.context["csrf_token"])
    made = client.post(
        "/settings/prompts/",
        {"name": "email", "title": "Polite email", "text": "Write to {{who}}", "csrfmiddlewaretoken": token},
    )
    assert made.status_code == 302
    refused = client.post("/settings/prompts/", {"name": "email", "text": "again", "csrfmiddlewaretoken": token})
    assert refused.status_code == 400 and 'data-code="name_taken"' in refused.content.decode()
    assert client.post("/settings/prompts/", {"name": "other", "text": "no token"}).status_code == 403
    choices = client.get("/settings/prompts/list.json").json()["prompts"]
    assert choices == [
        {"name": "email", "title": "Polite email", "text": "Write to {{who}}", "shared": False, "mine": True}
    ]
    # published=on from someone who may not publish: refused, nothing changed.
    pk = Prompt.objects.get(owner=user).pk
    sneaky = client.post(
        f"/settings/prompts/{pk}/", {"name": "email", "text": "x", "published": "on", "csrfmiddlewaretoken": token}
    )
    assert sneaky.status_code == 400 and not Prompt.objects.get(pk=pk).published
    assert client.post(f"/settings/prompts/{pk}/delete", {"csrfmiddlewaretoken": token}).status_code == 302
    assert not Prompt.objects.filter(pk=pk).exists()


def test_the_admin_lists_published_prompts_only_for_those_who_may_publish(make_user, publisher):
    ana = make_user("ana")
    services.prompt_create(user=ana, name="private", title="Private", text="only ana")
    shared = services.prompt_create(user=publisher, name="shared", title="Shared", text="for all", published=True)
    staff = Client()
    staff.force_login(publisher)
    listing = staff.get("/admin/chat/prompt/")
    assert listing.status_code == 200
    assert "/shared" in listing.content.decode() and "/private" not in listing.content.decode()
    done = staff.post("/admin/chat/prompt/", {"action": "unpublish", "_selected_action": [shared.pk]})
    assert done.status_code == 302 and not Prompt.objects.get(pk=shared.pk).published
    other = make_user("plainstaff")
    other.is_staff = True
    other.save()
    plain = Client()
    plain.force_login(other)
    assert plain.get("/admin/chat/prompt/").status_code == 403


def test_a_persons_prompts_are_in_their_data_download_and_go_with_their_account(make_user):
    import json

    from chat.accounts.personal_data import personal_data_chunks

    ana, bob = make_user("ana"), make_user("bob")
    services.prompt_create(user=ana, name="mine", title="Mine", text="ana's words")
    services.prompt_create(user=bob, name="his", title="His", text="bob's words")
    data = json.loads("".join(personal_data_chunks(user=ana)))
    assert [(p["name"], p["text"]) for p in data["prompts"]] == [("mine", "ana's words")]
    ana.delete()
    assert list(Prompt.objects.values_list("name", flat=True)) == ["his"]
