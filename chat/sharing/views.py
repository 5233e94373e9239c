"""Share links over HTTP: the owner's JSON endpoints (list, make, revoke; session and CSRF like every POST of the
site) and the public page behind a link, which needs no sign-in.

The public page is read-only and has the strictest policy of the site: scripts from this origin only (the page's
Markdown renderer, the same sanitiser as the chat page), no connection anywhere, no form, no frame, no referrer;
``noindex`` in a meta tag and an ``X-Robots-Tag`` header; never cached (a revoked link must stop at once)."""

from __future__ import annotations

from csp.decorators import csp
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from chat.errors import ChatError, ErrorCode, json_refusal
from chat.sharing import selectors, services

STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.NOTHING_TO_SHARE: 409,
    ErrorCode.TOO_MANY_SHARE_LINKS: 409,
    ErrorCode.RATE_LIMITED: 429,
}

# The public page's whole policy (it replaces the site's): nothing but this origin's scripts, styles, fonts and icon.
PUBLIC_CSP = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "font-src": ["'self'"],  # KaTeX's fonts (static/vendor/katex-*/fonts)
    "connect-src": ["'none'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],
    "frame-ancestors": ["'none'"],
}


def share_url(request, share) -> str:
    return selectors.link_url(share, request.build_absolute_uri)


def _refused(exc: ChatError) -> JsonResponse:
    return json_refusal(exc, STATUS.get(exc.code, 400))


@login_required
@require_http_methods(["GET", "POST"])
def conversation_shares(request, conversation_id: int):
    """GET: the conversation's live links. POST: a new link to its shown branch as it is now (201)."""
    try:
        if request.method == "POST":
            share = services.share_create(user=request.user, conversation_id=conversation_id)
            return JsonResponse({"share": selectors.share_payload(share, share_url(request, share))}, status=201)
        shares = selectors.shares_for_conversation(user=request.user, conversation_id=conversation_id)
    except ChatError as exc:
        return _refused(exc)
    return JsonResponse({"shares": [selectors.share_payload(s, share_url(request, s)) for s in shares]})


@login_required
@require_POST
def share_revoke(request, share_id: int):
    """Revoke one of the person's links: JSON for the chat page's dialog, back to the Account page for its form."""
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        services.share_revoke(user=request.user, share_id=share_id)
    except ChatError as exc:
        if wants_json:
            return _refused(exc)
        return redirect(reverse("account") + "#shares")
    if wants_json:
        return JsonResponse({"revoked": share_id})
    return redirect(reverse("account") + "#shares")


@csp(PUBLIC_CSP)
@require_safe
def shared_page(request, token: str):
    """The snapshot behind a link, for anyone who has it; a revoked or unknown link gets a page that says so
    (404). Not audited: the owner chose to publish it, and a reviewer reading it reads what any stranger can."""
    try:
        snapshot = selectors.shared_snapshot(token=token)
    except ChatError as exc:
        response = render(request, "chat/share_gone.html", {"code": exc.code, "detail": exc.detail}, status=404)
    else:
        response = render(request, "chat/shared.html", snapshot)
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response
