"""Live generations: replies queued or streaming right now — whose, where, how long, which worker, how far —
refreshing by itself, with a Cancel that stops a reply exactly as its owner's Stop would
(``review.reply_cancel`` → ``services.reply_stop``), audited."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from chat.admin.common import ReviewerOnly
from chat.errors import ChatError
from chat.models import LiveGeneration
from chat.replies.liveness import ReplyProgress
from chat.replies.services import StopOutcome
from chat.review import selectors, services

UNKNOWN = ReplyProgress(worker=None, tokens=None)
DASH = "—"


def _duration(seconds: float) -> str:
    """42 s, 3 min 04 s, 2 h 05 min."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _replies(n: int) -> str:
    return ngettext("%(n)s reply", "%(n)s replies", n) % {"n": n}


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{pk}" for pk in ids)


@admin.register(LiveGeneration)
class LiveGenerationAdmin(ReviewerOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "owner",
        "conversation_link",
        "model_column",
        "state",
        "waiting",
        "streaming_for",
        "tokens",
        "holder",
        "cancel_button",
    )
    list_display_links = None  # a row opens nothing here: its conversation's page is the audited way in
    sortable_by = ()  # oldest first, always: the longest wait is the one to look at
    list_per_page = 100
    actions = ["cancel_selected"]
    change_list_template = "admin/chat/livegeneration/change_list.html"

    def get_queryset(self, request):
        return selectors.replies_live()

    def get_urls(self):
        # Only the list and the cancel: no change page (a reply's text is read, audited, on its conversation's
        # page), no add, no delete, no history.
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name="chat_livegeneration_changelist"),
            path(
                "<int:message_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="chat_livegeneration_cancel",
            ),
        ]

    def get_changelist_instance(self, request):
        """The page's rows with what Redis knows of each (worker, tokens so far), read for all of them at once."""
        cl = super().get_changelist_instance(request)
        cl.result_list = list(cl.result_list)
        progress = selectors.replies_live_progress(message_ids=[m.pk for m in cl.result_list])
        for reply in cl.result_list:
            reply.progress = progress.get(reply.pk, UNKNOWN)
        return cl

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request,
            {
                "title": "Replies being generated right now",
                **(extra_context or {}),
                "refresh_s": settings.CHAT_LIVE_REFRESH_S,
            },
        )

    # --- columns

    @admin.display(description="user")
    def owner(self, obj):
        return obj.conversation.owner

    @admin.display(description="conversation")
    def conversation_link(self, obj):
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:chat_conversation_change", args=[obj.conversation_id]),
            str(obj.conversation),
        )

    @admin.display(description="model")
    def model_column(self, obj):
        return obj.model_name

    @admin.display(description="status")
    def state(self, obj):
        return f"{obj.status} (stopping)" if obj.stop_requested else obj.status

    @admin.display(description="waiting")
    def waiting(self, obj):
        return _duration((timezone.now() - obj.created_at).total_seconds())

    @admin.display(description="streaming for")
    def streaming_for(self, obj):
        return _duration((timezone.now() - obj.started_at).total_seconds()) if obj.started_at else DASH

    @admin.display(description="tokens so far")
    def tokens(self, obj):
        return DASH if obj.progress.tokens is None else obj.progress.tokens

    @admin.display(description="worker")
    def holder(self, obj):
        # The lease says who holds it now; the row says who claimed it (the same, until a lease lapses).
        return obj.progress.worker or obj.worker or DASH

    @admin.display(description="")
    def cancel_button(self, obj):
        # The list sits inside Django's actions form, and forms do not nest: the button submits the page's one
        # small POST form (with its CSRF token, outside the list) to this row's cancel URL.
        return format_html(
            '<button type="submit" form="live-cancel" formaction="{}" class="button">Cancel</button>',
            reverse("admin:chat_livegeneration_cancel", args=[obj.pk]),
        )

    # --- cancelling

    def _cancel(self, request, message_ids: list[int]) -> None:
        try:
            outcomes = services.reply_cancel(actor=request.user, message_ids=message_ids)
        except ChatError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return
        by = {o: [pk for pk, got in outcomes.items() if got == o] for o in StopOutcome}
        if by[StopOutcome.STOPPED]:
            self.message_user(
                request,
                _("Cancelled %(replies)s still queued: %(ids)s.")
                % {"replies": _replies(len(by[StopOutcome.STOPPED])), "ids": _ids(by[StopOutcome.STOPPED])},
                messages.SUCCESS,
            )
        if by[StopOutcome.STOPPING]:
            self.message_user(
                request,
                _("Stopping %(replies)s being streamed: %(ids)s; the worker ends each with the text so far.")
                % {"replies": _replies(len(by[StopOutcome.STOPPING])), "ids": _ids(by[StopOutcome.STOPPING])},
                messages.SUCCESS,
            )
        if by[StopOutcome.ALREADY_FINISHED]:
            self.message_user(
                request,
                _("Already finished, nothing to cancel: %(ids)s.") % {"ids": _ids(by[StopOutcome.ALREADY_FINISHED])},
                messages.WARNING,
            )

    def cancel_view(self, request, message_id: int):
        """POST: cancel one reply (the row's button)."""
        if not services.can_review(request.user):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._cancel(request, [message_id])
        return HttpResponseRedirect(reverse("admin:chat_livegeneration_changelist"))

    @admin.action(description="Cancel the selected generations", permissions=["review"])
    def cancel_selected(self, request, queryset):
        self._cancel(request, list(queryset.values_list("pk", flat=True)))

    def response_action(self, request, queryset):
        """Selected rows are looked up among all replies, not only the live ones, so a row that ended since the
        page was drawn is reported "already finished" instead of Django's "no items selected". "Select all"
        still means all live ones."""
        if request.POST.get("select_across") != "1":
            queryset = selectors.replies_all()
        return super().response_action(request, queryset)
