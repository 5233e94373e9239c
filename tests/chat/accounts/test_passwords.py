"""Password reset by email (Django's views, our pages) and password change from the Account page; mail goes to
the console by default and to SMTP when EMAIL_URL says so."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

OLD, NEW = "a-long-test-password", "Brand-New-Horse-42"


def test_reset_mail_is_sent_and_its_link_sets_a_new_password(django_user_model, mailoutbox):
    django_user_model.objects.create_user(username="alice", email="alice@example.com", password=OLD)
    client = Client()
    form = client.get("/accounts/login/")
    assert b'href="/accounts/password_reset/"' in form.content
    sent = client.post("/accounts/password_reset/", {"email": "alice@example.com"}, follow=True)
    assert b"Check your email" in sent.content
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["alice@example.com"]
    assert "Reset your password" in mailoutbox[0].subject and '"alice"' in mailoutbox[0].body
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mailoutbox[0].body).group(1)

    choose = client.get(link, follow=True)  # Django swaps the token for a session and redirects
    assert b"Choose a new password" in choose.content and b"<form" in choose.content
    done = client.post(choose.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW}, follow=True)
    assert b"Your new password is set" in done.content
    assert django_user_model.objects.get(username="alice").check_password(NEW)

    again = Client().get(link, follow=True)  # the link works once
    assert b'data-code="reset_link_invalid"' in again.content
    assert Client().post("/accounts/login/", {"username": "alice", "password": NEW}).status_code == 302


def test_no_mail_for_an_unknown_address_and_the_same_page(mailoutbox):
    response = Client().post("/accounts/password_reset/", {"email": "nobody@example.com"}, follow=True)
    assert b"Check your email" in response.content and mailoutbox == []


def test_password_change_from_the_account_page(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password=OLD)
    client = Client()
    client.force_login(alice)
    assert b'href="/accounts/password_change/"' in client.get("/accounts/").content
    wrong = client.post(
        "/accounts/password_change/", {"old_password": "nope", "new_password1": NEW, "new_password2": NEW}
    )
    assert wrong.status_code == 200 and not django_user_model.objects.get(pk=alice.pk).check_password(NEW)
    done = client.post(
        "/accounts/password_change/", {"old_password": OLD, "new_password1": NEW, "new_password2": NEW}, follow=True
    )
    assert b"Your password is changed" in done.content
    assert django_user_model.objects.get(pk=alice.pk).check_password(NEW)
    assert client.get("/").status_code == 200  # this session stays signed in


@pytest.mark.parametrize(
    "env, backend, host",
    [
        ({}, "django.core.mail.backends.console.EmailBackend", "None"),
        (
            {"EMAIL_URL": "smtp+tls://mailer:secret@mail.example.com:587"},
            "django.core.mail.backends.smtp.EmailBackend",
            "mail.example.com",
        ),
    ],
)
def test_mail_goes_to_the_console_unless_email_url_names_a_server(env, backend, host):
    root = Path(__file__).resolve().parents[3]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_")}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_USE_TLS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**clean, **env, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
    ).stdout.split()
    assert out[-3:] == [backend, host, str(bool(env))]
