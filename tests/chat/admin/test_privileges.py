"""Who may make whom staff, superuser, a reviewer: only superusers, through the admin's real forms, and every grant
or removal of a flag, a group membership or a permission leaves an audit row (who, whom, what) that the audit
log screen shows. Approving sign-ups is its own permission (``chat.approve_account``, the "approver" group),
not "may change users"."""

import pytest
from django.contrib.auth.models import Permission
from django.forms import MultiWidget
from django.test import Client
from django.urls import reverse

from chat.models import Account, AuditEvent

pytestmark = pytest.mark.django_db

GRANTED, REMOVED = AuditEvent.Action.PRIVILEGE_GRANTED, AuditEvent.Action.PRIVILEGE_REMOVED


def perm(label: str) -> Permission:
    app, codename = label.split(".")
    return Permission.objects.get(content_type__app_label=app, codename=codename)


@pytest.fixture
def clerk(django_user_model):
    """Staff holding exactly what the docs once told operators to give approvers: change and view users."""
    user = django_user_model.objects.create_user(username="clerk", password=None, is_staff=True)
    user.user_permissions.set([perm("auth.change_user"), perm("auth.view_user")])
    return user


@pytest.fixture
def signed_in():
    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make


def change_url(user) -> str:
    return reverse("admin:auth_user_change", args=[user.pk])


def form_data(page) -> dict:
    """What the change page's form would post back unchanged: every field the form has, as the browser sends it."""
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form[name].value()
        if isinstance(field.widget, MultiWidget):  # the split date and time of last_login, date_joined
            for i, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{i}"] = "" if part is None else str(part)
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, (list, tuple)):
            data[name] = [str(getattr(v, "pk", v)) for v in value]
        elif value is not None:
            data[name] = str(value)
    return data


def promotion(reviewer_group) -> dict:
    """Every privilege a user row carries, asked for at once."""
    return {
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [str(reviewer_group.pk)],
        "user_permissions": [str(perm("chat.review_conversation").pk), str(perm("auth.change_user").pk)],
    }


def privileges(user) -> tuple:
    user.refresh_from_db()
    return (
        user.is_staff,
        user.is_superuser,
        sorted(user.groups.values_list("name", flat=True)),
        sorted(user.user_permissions.values_list("codename", flat=True)),
    )


def test_staff_who_may_change_users_cannot_promote_themselves(clerk, reviewer_group, signed_in):
    client = signed_in(clerk)
    before = privileges(clerk)
    page = client.get(change_url(clerk))
    assert page.status_code == 200  # their own page, shown read-only: they are staff, a superuser's to change
    posted = client.post(change_url(clerk), {**form_data(page), **promotion(reviewer_group), "first_name": "Clerk"})
    assert posted.status_code == 403
    assert privileges(clerk) == before and clerk.first_name == ""
    assert not client.get(reverse("admin:chat_conversation_changelist")).status_code == 200
    assert not client.get(reverse("admin:chat_auditevent_changelist")).status_code == 200
    assert not AuditEvent.objects.filter(action__in=[GRANTED, REMOVED]).exists()


def test_staff_who_may_change_users_cannot_promote_anyone_else(clerk, reviewer_group, signed_in, django_user_model):
    """They still edit a person's name or email; the privilege fields are not in their form, so posting them
    anyway changes nothing."""
    bob = django_user_model.objects.create_user(username="bob", password=None)
    client = signed_in(clerk)
    page = client.get(change_url(bob))
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert not {"is_staff", "is_superuser", "groups", "user_permissions"} & set(form.fields)
    posted = client.post(change_url(bob), {**form_data(page), **promotion(reviewer_group), "first_name": "Bob"})
    assert posted.status_code == 302
    assert privileges(bob) == (False, False, [], []) and bob.first_name == "Bob"  # saved, but no privilege
    assert not AuditEvent.objects.filter(action__in=[GRANTED, REMOVED]).exists()


def test_staff_who_may_change_users_cannot_take_over_a_staff_account(clerk, signed_in, django_user_model):
    """Setting a superuser's password or email (then resetting it) would be the same promotion by another door."""
    root = django_user_model.objects.create_superuser(username="root", password=None, email="root@example.com")
    client = signed_in(clerk)
    password_url = reverse("admin:auth_user_password_change", args=[root.pk])
    new = "Another-Long-Password-9"
    assert client.post(password_url, {"password1": new, "password2": new}).status_code == 403
    page = client.get(change_url(root))
    assert client.post(change_url(root), {**form_data(page), "email": "clerk@example.com"}).status_code == 403
    root.refresh_from_db()
    assert not root.check_password(new) and root.email == "root@example.com"


def test_staff_who_may_change_users_cannot_take_over_an_ordinary_persons_account(clerk, signed_in, django_user_model):
    """Another person's password, email (then reset mail) or username is a superuser's to change: signed in as
    them, staff would read their chats without the reviewer permission or an audit row."""
    bob = django_user_model.objects.create_user(username="bob", password="Bobs-Own-Password-1", email="bob@example.com")
    client = signed_in(clerk)
    new = "Another-Long-Password-9"
    password_url = reverse("admin:auth_user_password_change", args=[bob.pk])
    assert client.get(password_url).status_code == 403
    assert client.post(password_url, {"password1": new, "password2": new}).status_code == 403
    page = client.get(change_url(bob))
    assert not {"username", "email"} & set(page.context["adminform"].form.fields)
    posted = {**form_data(page), "email": "clerk@example.com", "username": "bobby", "first_name": "Bob"}
    assert client.post(change_url(bob), posted).status_code == 302
    bob.refresh_from_db()
    assert bob.check_password("Bobs-Own-Password-1") and (bob.email, bob.username) == ("bob@example.com", "bob")
    assert bob.first_name == "Bob"  # what is not a way in still changes


def test_approving_sign_ups_is_its_own_permission(approver_group, clerk, signed_in, django_user_model, settings):
    settings.CHAT_SIGNUP = "approval"
    pat = django_user_model.objects.create_user(username="pat", password=None)
    Account.objects.create(user=pat)
    action = {"action": "approve", "_selected_action": [pat.pk]}
    changelist = reverse("admin:auth_user_changelist")

    signed_in(clerk).post(changelist, action)  # change_user is no longer the permission to approve
    assert Account.objects.get(user=pat).approved_at is None

    approver = django_user_model.objects.create_user(username="ann", password=None, is_staff=True)
    approver.groups.add(approver_group)  # made by migration, as "reviewer" is
    client = signed_in(approver)
    assert b"Awaiting approval" in client.get(changelist).content
    client.post(changelist, action)
    assert Account.objects.get(user=pat).approved_by == approver
    assert client.get(change_url(pat)).context["has_change_permission"] is False  # approving, not editing


def test_the_migration_lets_whoever_approved_before_go_on_approving(clerk, django_user_model):
    """Operators followed the docs and gave approvers "change user": upgrading keeps them approving (migration
    0014 gives every holder of auth.change_user, person or group, chat.approve_account too)."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("chat.migrations.0014_approve_account_and_privilege_audit")
    assert not django_user_model.objects.get(pk=clerk.pk).has_perm("chat.approve_account")
    migration.create_group(apps, None)
    assert django_user_model.objects.get(pk=clerk.pk).has_perm("chat.approve_account")


def test_every_grant_and_removal_by_a_superuser_is_an_audit_row_on_the_audit_screen(
    reviewer_group, signed_in, django_user_model
):
    root = django_user_model.objects.create_superuser(username="root", password=None)
    bob = django_user_model.objects.create_user(username="bob", password=None)
    client = signed_in(root)

    page = client.get(change_url(bob))
    assert client.post(change_url(bob), {**form_data(page), **promotion(reviewer_group)}).status_code == 302
    assert privileges(bob) == (True, True, ["reviewer"], ["change_user", "review_conversation"])
    page = client.get(change_url(bob))
    kept = {k: v for k, v in form_data(page).items() if k not in ("is_superuser", "groups", "user_permissions")}
    assert client.post(change_url(bob), kept).status_code == 302  # unticked: superuser, group, permissions
    assert privileges(bob) == (True, False, [], [])

    rows = list(AuditEvent.objects.order_by("id").values_list("actor_name", "action", "details"))
    whom = {"user_id": bob.pk, "user": "bob"}
    assert rows == [
        ("root", GRANTED, {**whom, "what": "staff"}),
        ("root", GRANTED, {**whom, "what": "superuser"}),
        ("root", GRANTED, {**whom, "what": "group", "name": "reviewer"}),
        ("root", GRANTED, {**whom, "what": "permission", "name": "auth.change_user"}),
        ("root", GRANTED, {**whom, "what": "permission", "name": "chat.review_conversation"}),
        ("root", REMOVED, {**whom, "what": "superuser"}),
        ("root", REMOVED, {**whom, "what": "group", "name": "reviewer"}),
        ("root", REMOVED, {**whom, "what": "permission", "name": "auth.change_user"}),
        ("root", REMOVED, {**whom, "what": "permission", "name": "chat.review_conversation"}),
    ]
    screen = client.get(reverse("admin:chat_auditevent_changelist"), {"action": GRANTED}).content.decode()
    assert screen.count("privilege granted") >= 5 and "chat.review_conversation" in screen and "bob" in screen


def test_only_superusers_change_groups_and_each_permission_a_group_gains_or_loses_is_audited(
    approver_group, signed_in, django_user_model
):
    """A group's permissions are every member's: staff who could edit the reviewer group's, or their own
    group's, would promote themselves."""
    clerk = django_user_model.objects.create_user(username="clerk", password=None, is_staff=True)
    clerk.user_permissions.set([perm("auth.change_group"), perm("auth.view_group"), perm("auth.add_group")])
    approver = approver_group
    clerk.groups.add(approver)
    url = reverse("admin:auth_group_change", args=[approver.pk])
    review = str(perm("chat.review_conversation").pk)
    kept = [str(p) for p in approver.permissions.values_list("pk", flat=True)]

    client = signed_in(clerk)
    assert client.post(url, {"name": "approver", "permissions": [*kept, review]}).status_code == 403
    assert client.post(reverse("admin:auth_group_add"), {"name": "x", "permissions": [review]}).status_code == 403
    assert not approver.permissions.filter(codename="review_conversation").exists()

    root = django_user_model.objects.create_superuser(username="root", password=None)
    assert signed_in(root).post(url, {"name": "approver", "permissions": [*kept, review]}).status_code == 302
    assert signed_in(root).post(url, {"name": "approver", "permissions": kept}).status_code == 302
    rows = list(AuditEvent.objects.order_by("id").values_list("actor_name", "action", "details"))
    about = {"group_id": approver.pk, "group": "approver", "what": "permission", "name": "chat.review_conversation"}
    assert rows == [("root", GRANTED, about), ("root", REMOVED, about)]


def test_rows_about_a_deleted_person_keep_their_id_not_their_name(reviewer_group, signed_in, django_user_model):
    from chat.accounts import services

    root = django_user_model.objects.create_superuser(username="root", password=None)
    bob = django_user_model.objects.create_user(username="bob", password=None)
    client = signed_in(root)
    page = client.get(change_url(bob))
    client.post(change_url(bob), {**form_data(page), "groups": [str(reviewer_group.pk)]})
    services.account_delete(user_id=bob.pk)
    event = AuditEvent.objects.get(action=GRANTED)
    assert event.details == {"user_id": bob.pk, "user": f"deleted user {bob.pk}", "what": "group", "name": "reviewer"}


def test_deleting_a_group_is_a_removal_for_each_member(reviewer_group, signed_in, django_user_model):
    root = django_user_model.objects.create_superuser(username="root", password=None)
    bob = django_user_model.objects.create_user(username="bob", password=None, is_staff=True)
    bob.groups.add(reviewer_group)
    url = reverse("admin:auth_group_delete", args=[reviewer_group.pk])
    assert signed_in(root).post(url, {"post": "yes"}).status_code == 302
    assert not bob.has_perm("chat.review_conversation")
    assert list(AuditEvent.objects.values_list("actor_name", "action", "details")) == [
        ("root", REMOVED, {"user_id": bob.pk, "user": "bob", "what": "group", "name": "reviewer"})
    ]
