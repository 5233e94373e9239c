"""Sign-up under each CHAT_SIGNUP policy: open, approval (log in, refused with not_approved, approved by staff in
the admin, then accepted), invite (a valid link works once; used, expired and unknown links are refused)."""

import datetime
import re

import pytest
from django.test import Client
from django.utils import timezone

from chat.accounts import services
from chat.models import Account, Invite
from tests.helpers.support import connect, frames_until, run

PASSWORD = "Correct-Horse-7"


def sign_up(client, name, url="/accounts/signup/", email=None):
    return client.post(
        url, {"username": name, "email": email or f"{name}@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )


@pytest.mark.django_db
def test_open_sign_up_creates_an_approved_account_and_signs_in(client, django_user_model, settings):
    settings.CHAT_SIGNUP = "open"
    assert client.get("/accounts/signup/").status_code == 200
    response = sign_up(client, "carol")
    assert response.status_code == 302 and response["Location"] == "/"
    carol = django_user_model.objects.get(username="carol")
    assert carol.email == "carol@example.com" and carol.account.approved_at is not None
    page = client.get("/")
    assert page.status_code == 200 and b'id="pending"' not in page.content and b'href="/accounts/"' in page.content


@pytest.mark.django_db
def test_sign_up_asks_for_an_email_and_one_account_per_address(client, django_user_model):
    missing = client.post("/accounts/signup/", {"username": "dan", "password1": PASSWORD, "password2": PASSWORD})
    assert missing.status_code == 200 and not django_user_model.objects.filter(username="dan").exists()
    assert sign_up(Client(), "erin", email="Erin@example.com").status_code == 302
    twice = sign_up(client, "erin2", email="erin@EXAMPLE.com")
    assert b"An account with this email address exists already" in twice.content
    assert not django_user_model.objects.filter(username="erin2").exists()


@pytest.mark.django_db(transaction=True)
def test_approval_pending_person_logs_in_is_refused_then_approved_by_staff_and_chats(django_user_model, settings):
    settings.CHAT_SIGNUP = "approval"
    client = Client()
    signup_page = client.get("/accounts/signup/")
    assert b"approved by its staff" in signup_page.content
    assert sign_up(client, "pat").status_code == 302
    pat = django_user_model.objects.get(username="pat")
    assert pat.account.approved_at is None
    page = client.get("/")
    assert page.status_code == 200  # logged in; the page says why they cannot chat
    assert b'data-code="not_approved"' in page.content
    assert b"waiting for approval by the site" in page.content
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    async def send_once(until):
        comm, connected, _ = await connect(cookie)
        assert connected
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Hello"})
        frames = await frames_until(comm, until)
        await comm.disconnect()
        return frames

    refused = run(send_once("error"))
    assert refused[-1]["code"] == "not_approved" and "waiting for approval" in refused[-1]["detail"]
    assert not pat.conversations.exists()  # nothing stored

    # Staff find them under "awaiting approval" and approve them with the list action.
    root = django_user_model.objects.create_superuser(username="root", password="a-long-test-password")
    django_user_model.objects.create_user(username="old", password="a-long-test-password")  # no row: approved
    staff = Client()
    staff.force_login(root)
    listing = staff.get("/admin/auth/user/?approval=awaiting")
    assert [u.username for u in listing.context["cl"].result_list] == ["pat"]
    done = staff.post(
        "/admin/auth/user/?approval=awaiting", {"action": "approve", "_selected_action": [pat.pk]}, follow=True
    )
    assert b"Approved 1 person" in done.content
    pat.account.refresh_from_db()
    assert pat.account.approved_at is not None and pat.account.approved_by == root
    assert not staff.get("/admin/auth/user/?approval=awaiting").context["cl"].result_list

    accepted = run(send_once("message"))
    assert [f["type"] for f in accepted] == ["conversation", "message"]
    assert pat.conversations.count() == 1
    assert b'id="pending"' not in client.get("/").content


@pytest.mark.django_db
def test_the_approve_action_needs_permission_to_change_people(django_user_model, settings):
    from django.contrib.auth.models import Permission

    settings.CHAT_SIGNUP = "approval"
    sign_up(Client(), "quinn")
    staff = django_user_model.objects.create_user(username="staff", password="x-long-password", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename="view_user"))
    client = Client()
    client.force_login(staff)
    quinn = django_user_model.objects.get(username="quinn")
    client.post("/admin/auth/user/", {"action": "approve", "_selected_action": [quinn.pk]})
    assert Account.objects.get(user=quinn).approved_at is None


@pytest.mark.django_db
def test_invite_only_sign_up_through_a_link_staff_made_in_the_admin(client, django_user_model, settings):
    settings.CHAT_SIGNUP = "invite"
    closed = client.get("/accounts/signup/")
    assert closed.status_code == 403 and b'data-code="invite_required"' in closed.content
    assert b"by invitation only" in closed.content and b"<form" not in closed.content.split(b"<main")[1]
    assert sign_up(client, "mallory").status_code == 403
    assert not django_user_model.objects.filter(username="mallory").exists()

    root = django_user_model.objects.create_superuser(username="root", password="a-long-test-password")
    staff = Client()
    staff.force_login(root)
    made = staff.post("/admin/chat/invite/add/", {"email": "", "note": "for Ivy", "valid_days": 3}, follow=True)
    link = re.search(rb"http://testserver(/accounts/signup/[\w-]+/)", made.content).group(1).decode()
    invite = Invite.objects.get()
    assert invite.created_by == root and invite.note == "for Ivy" and invite.used_at is None
    assert abs(invite.expires_at - (timezone.now() + datetime.timedelta(days=3))) < datetime.timedelta(minutes=1)
    assert link.encode() in staff.get("/admin/chat/invite/").content

    assert client.get(link).status_code == 200
    assert sign_up(client, "ivy", url=link).status_code == 302
    ivy = django_user_model.objects.get(username="ivy")
    invite.refresh_from_db()
    assert invite.used_by == ivy and invite.used_at is not None and ivy.account.approved_at is not None

    other = Client()
    used = other.get(link)
    assert (
        used.status_code == 410 and b'data-code="invite_used"' in used.content and b"already been used" in used.content
    )
    assert sign_up(other, "ivy2", url=link).status_code == 410
    assert not django_user_model.objects.filter(username="ivy2").exists()


@pytest.mark.django_db
def test_expired_unknown_and_other_address_invites_are_refused_with_sentences(client, django_user_model, settings):
    settings.CHAT_SIGNUP = "invite"
    root = django_user_model.objects.create_superuser(username="root", password="a-long-test-password")
    expired = services.invite_create(created_by=root, days=1)
    Invite.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    page = client.get(f"/accounts/signup/{expired.token}/")
    assert page.status_code == 410 and b'data-code="invite_expired"' in page.content and b"expired on" in page.content
    assert sign_up(client, "late", url=f"/accounts/signup/{expired.token}/").status_code == 410

    unknown = client.get("/accounts/signup/not-a-real-token/")
    assert unknown.status_code == 404 and b'data-code="invite_unknown"' in unknown.content
    assert b"not valid" in unknown.content

    addressed = services.invite_create(created_by=root, email="zoe@example.com")
    form = client.get(f"/accounts/signup/{addressed.token}/")
    assert b'value="zoe@example.com"' in form.content
    wrong = sign_up(client, "zed", url=f"/accounts/signup/{addressed.token}/", email="zed@example.com")
    assert wrong.status_code == 403 and b'data-code="invite_email"' in wrong.content
    assert not django_user_model.objects.filter(username__in=["late", "zed"]).exists()
    assert (
        sign_up(client, "zoe", url=f"/accounts/signup/{addressed.token}/", email="ZOE@example.com").status_code == 302
    )
    assert Invite.objects.get(pk=addressed.pk).used_by.username == "zoe"


@pytest.mark.django_db
def test_existing_people_are_approved_by_the_migration(django_user_model):
    """The migration's data step gives every user without a row an approved Account (when they joined)."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("chat.migrations.0008_accounts_invites")
    before = django_user_model.objects.create_user(username="before", password="a-long-test-password")
    assert not Account.objects.filter(user=before).exists()
    migration.approve_existing(apps, None)
    assert Account.objects.get(user=before).approved_at == before.date_joined


@pytest.mark.django_db
def test_one_address_makes_so_many_accounts_an_hour_others_and_invites_are_not_held_up(django_user_model, settings):
    """Every account brings its own allowance: CHAT_SIGNUPS_PER_HOUR bounds those one address makes without an
    invite. The refusal is a 429 with a sentence and Retry-After, the form keeps what was typed, nothing is made."""
    settings.CHAT_SIGNUP, settings.CHAT_SIGNUPS_PER_HOUR = "open", 2
    assert [sign_up(Client(REMOTE_ADDR="198.51.100.4"), name).status_code for name in ("s1", "s2")] == [302, 302]
    assert django_user_model.objects.filter(username__in=["s1", "s2"]).count() == 2
    refused = sign_up(Client(REMOTE_ADDR="198.51.100.4"), "s3")
    assert refused.status_code == 429 and b'data-code="signup_rate_limited"' in refused.content
    assert b"2 accounts have been made from your address in the last hour" in refused.content
    assert 3000 < int(refused["Retry-After"]) <= 3600 and b'value="s3"' in refused.content
    assert not django_user_model.objects.filter(username="s3").exists()
    assert sign_up(Client(REMOTE_ADDR="198.51.100.5"), "neighbour").status_code == 302
    staff = django_user_model.objects.create_superuser(username="root", password=PASSWORD)
    invite = services.invite_create(created_by=staff)
    assert (
        sign_up(Client(REMOTE_ADDR="198.51.100.4"), "invited", url=f"/accounts/signup/{invite.token}/").status_code
        == 302
    )
