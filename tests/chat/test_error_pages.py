"""The error pages (templates/404.html, 403.html, 500.html) with DEBUG off, as a person meets them: the site's
stylesheet, no script, a link back to the chat; and the 500 page renders without a request or a session."""

from django.test import RequestFactory
from django.urls import reverse
from django.views import defaults


def test_an_unknown_address_gets_the_sites_404_page(client, settings, db):
    assert settings.DEBUG is False
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<title>Page not found · Chat</title>" in html
    assert 'class="card error-page"' in html
    assert "chat/page/chat.css" in html
    assert f'href="{reverse("chat:index")}"' in html and "Back to the chat" in html
    assert "<script" not in html


def test_the_403_and_500_pages_share_the_look(rf: RequestFactory, db):
    request = rf.get("/somewhere/")
    forbidden = defaults.permission_denied(request, PermissionError("no")).content.decode()
    assert "Not allowed" in forbidden and "Back to the chat" in forbidden and "<script" not in forbidden
    # Django renders 500.html with no request context at all: nothing in it may need one.
    response = defaults.server_error(request)
    assert response.status_code == 500
    failed = response.content.decode()
    assert "Something went wrong" in failed and f'href="{reverse("chat:index")}"' in failed
    assert "chat/page/chat.css" in failed and "<script" not in failed


def test_a_staff_member_refused_a_panel_screen_is_told_which_permissions_the_panel_needs(client, django_user_model):
    """A 403 in the review panel names what its screens need (a person refused elsewhere is told nothing of it)."""
    staff = django_user_model.objects.create_user(username="new-staff", password=None, is_staff=True)
    client.force_login(staff)
    response = client.get("/admin/chat/conversation/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "Not allowed" in html and "Each screen of the review panel needs its own permission" in html
    assert "the group “reviewer” has it" in html and "the audit log a superuser" in html
    assert f'href="{reverse("admin:index")}"' in html  # the way back to the screens they may open
    person = django_user_model.objects.create_user(username="a-person", password=None)
    client.force_login(person)
    elsewhere = defaults.permission_denied(RequestFactory().get("/somewhere/"), PermissionError("no"))
    assert "review panel" not in elsewhere.content.decode()
    assert reverse("admin:index") not in elsewhere.content.decode()
