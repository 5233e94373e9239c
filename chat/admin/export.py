"""Dataset export from the conversation list and the review queue: the selected rows (two actions) or the
whole filtered list (links above the list), as SFT transcripts or preference pairs in JSONL.

Reviewers only. The audit rows go in first (``chat.review.services.export_record``), then the file streams a chunk of
conversations at a time (``chat.review.dataset``); the format is in docs/dataset-export.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    Http404,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.errors import ChatError
from chat.review import dataset, services

KINDS = {dataset.SFT: "SFT JSONL", dataset.PAIRS: "preference pairs JSONL"}


class ExportActions:
    """For a ModelAdmin of conversations: the two export actions, ``export/<kind>/`` for the filtered list,
    and the change-list template that links to it with the list's current filters and search."""

    change_list_template = "admin/chat/export_change_list.html"

    @admin.action(description="Export selected as SFT JSONL", permissions=["review"])
    def export_sft(self, request, queryset):
        return self._export(request, queryset, dataset.SFT)

    @admin.action(description="Export selected as preference pairs JSONL", permissions=["review"])
    def export_pairs(self, request, queryset):
        return self._export(request, queryset, dataset.PAIRS)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_export"
        return [
            path("export/<str:kind>/", self.admin_site.admin_view(self.export_view), name=name),
            *super().get_urls(),
        ]

    def export_view(self, request, kind: str):
        """POST (CSRF-checked: an export writes audit rows in the reviewer's name): the list as it is filtered
        and searched by the query string, exported whole."""
        if not services.can_review(request.user):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if kind not in KINDS:
            raise Http404("No such export.")
        try:
            # The list page's own ChangeList, so every filter, date drill-down and search applies as shown.
            conversations = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters:
            self.message_user(
                request, _("bad_filter: this list's filters are not valid; nothing was exported."), messages.ERROR
            )
            return self._back_to_list()
        return self._export(request, conversations, kind) or self._back_to_list()

    def _back_to_list(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))

    def _export(self, request, conversations, kind: str) -> StreamingHttpResponse | None:
        try:
            export = services.export_record(actor=request.user, kind=kind, conversations=conversations)
        except ChatError as err:
            self.message_user(
                request, _("%(code)s: %(detail)s") % {"code": err.code, "detail": err.detail}, messages.ERROR
            )
            return None
        lines = dataset.export_lines(kind=kind, conversations=conversations, export_id=export.id, upto=export.upto)
        response = StreamingHttpResponse(_served(request, lines), content_type="application/jsonl; charset=utf-8")
        filename = f"conversations-{kind}-{timezone.localdate().isoformat()}.jsonl"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "private, no-store"  # other people's words: no cache keeps a copy
        return response


def _served(request, chunks: Iterator[str]) -> Iterator[str] | AsyncIterator[str]:
    """Under ASGI (Daphne) Django reads a plain iterator into one list before sending a byte, so there the
    chunks are pulled one at a time, each in the request's sync thread (its database connection)."""
    return _pulled(chunks) if isinstance(request, ASGIRequest) else chunks


async def _pulled(chunks: Iterator[str]) -> AsyncIterator[str]:
    step = sync_to_async(next, thread_sensitive=True)
    while (text := await step(chunks, None)) is not None:
        yield text
