"""Account pages: sign-up (open, awaiting approval, or by invite link) and the Account page (password change,
data download, deletion). Log in, log out, password change and reset are Django's own views
(``chat/accounts/urls.py``), the password change with its old password throttled as logins are; these stay thin:
a form, one call into ``chat.accounts.services``, a page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordChangeView, PasswordResetView
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chat.accounts import selectors, services
from chat.accounts.client_address import throttle_address
from chat.accounts.forms import AccountDeleteForm, LanguageForm, SignupForm, ThrottledPasswordChangeForm
from chat.accounts.language import set_language_cookie
from chat.accounts.personal_data import personal_data_chunks, personal_data_stream
from chat.errors import ChatError, ErrorCode
from chat.limits import addresses
from chat.sharing import selectors as sharing_selectors

# A link that names no invite is not found; one that did but can no longer be used is gone.
REFUSAL_STATUS = {
    ErrorCode.INVITE_UNKNOWN: 404,
    ErrorCode.INVITE_USED: 410,
    ErrorCode.INVITE_EXPIRED: 410,
    ErrorCode.SIGNUP_RATE_LIMITED: 429,
    ErrorCode.RESET_RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
}


def signup(request, token: str | None = None):
    """Create an account and sign in; under ``CHAT_SIGNUP=invite`` only through a valid invite link."""
    if request.user.is_authenticated:
        return redirect("chat:index")
    invite = None
    try:
        if token is not None:
            invite = selectors.invite_for_signup(token=token)
        elif settings.CHAT_SIGNUP == "invite":
            raise ChatError(ErrorCode.INVITE_REQUIRED, services.INVITE_ONLY)
    except ChatError as exc:
        return _refused(request, exc)
    form = SignupForm(request.POST or None, initial={"email": invite.email if invite else ""})
    if request.method == "POST":
        try:
            addresses.signup_attempt_hit(throttle_address(request))  # every form sent, whatever it leads to
        except ChatError as exc:
            # Refused before the form is checked, so it says nothing of the email address; what was typed stays.
            typed = {name: request.POST.get(name, "") for name in ("username", "email")}
            return _refused(request, exc, SignupForm(initial=typed))
    if request.method == "POST" and form.is_valid():
        try:
            user = services.account_signup(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                invite_token=token,
                client_address=throttle_address(request),
            )
        except ChatError as exc:
            return _refused(request, exc, form)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:index")
    return render(
        request,
        "registration/signup.html",
        {"form": form, "invite": invite, "awaiting_approval": settings.CHAT_SIGNUP == "approval"},
    )


def _refused(request, exc: ChatError, form=None):
    response = render(
        request, "registration/signup.html", {"refusal": exc, "form": form}, status=REFUSAL_STATUS.get(exc.code, 403)
    )
    if exc.retry_after:
        response["Retry-After"] = str(exc.retry_after)
    return response


@login_required
def account_page(request, delete_form=None, status=200):
    """The person's Account page: who they are, whether they may chat, password, their share links, their data,
    deletion."""
    return render(
        request,
        "registration/account.html",
        {
            "may_chat": selectors.account_may_chat(user=request.user),
            "delete_form": delete_form or AccountDeleteForm(request),
            "share_links": sharing_selectors.share_rows(user=request.user, absolute=request.build_absolute_uri),
            "language_form": LanguageForm(initial={"language": selectors.stored_language(request.user)}),
        },
        status=status,
    )


@login_required
@require_POST
def language_choice(request):
    """Keep the person's language (every device they log in on) and switch this browser to it now."""
    form = LanguageForm(request.POST)
    if not form.is_valid():
        return account_page(request, status=400)
    language = form.cleaned_data["language"]
    services.language_store(user=request.user, language=language)
    response = redirect("account")
    set_language_cookie(response, language)
    return response


@login_required
@require_GET
def data_download(request):
    """Everything of the person's, as one JSON file, streamed (a long history never sits whole in memory)."""
    # Daphne (ASGI) needs an async iterator to stream; a WSGI server (the test live_server) a plain one.
    body = (
        personal_data_stream(user=request.user)
        if isinstance(request, ASGIRequest)
        else personal_data_chunks(user=request.user)
    )
    response = StreamingHttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="chat-data-{timezone.now():%Y-%m-%d}.json"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def account_delete(request):
    """Delete the signed-in person's account and everything in it, after they confirm with their password."""
    form = AccountDeleteForm(request, request.POST)
    if not form.is_valid():
        return account_page(request, delete_form=form, status=400)
    user_id = request.user.pk
    logout(request)  # this session's sockets close now; account_delete tells the person's other sessions
    services.account_delete(user_id=user_id)
    return render(request, "registration/account_deleted.html")


class PasswordReset(PasswordResetView):
    """Django's password reset page, its mail bounded per client address and per email address
    (``addresses.reset_hit``, counted whether or not an account has the address): a 429 page saying when to try
    again instead of another mail."""

    def form_valid(self, form):
        try:
            addresses.reset_hit(throttle_address(self.request), form.cleaned_data["email"])
        except ChatError as exc:
            response = self.render_to_response(
                self.get_context_data(form=form, refusal=exc), status=REFUSAL_STATUS.get(exc.code, 403)
            )
            if exc.retry_after:
                response["Retry-After"] = str(exc.retry_after)
            return response
        return super().form_valid(form)


class PasswordChange(PasswordChangeView):
    """Django's password change page, its old password checked as a login is: wrong ones count against the
    client address with wrong logins, and a locked address gets the lockout page (``password_is_theirs``)."""

    form_class = ThrottledPasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}


def locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout page (settings.AXES_LOCKOUT_CALLABLE): what happened and when to try again. Every
    refused try restarts the cool-off, so "from now" is exact."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    return render(
        request,
        "registration/locked_out.html",
        {
            "minutes": minutes,
            "retry_at": timezone.now() + cool_off if cool_off else None,
            "code": ErrorCode.LOGIN_LOCKED,
        },
        status=429,
    )
