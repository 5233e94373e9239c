"""Conversations and the review queue: the list, the read-only transcript page with its review form, and
the gold-answer page of one reply."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from chat.admin.common import AuditedSearch, RatingColumns, ReviewerOnly
from chat.admin.conversation_filters import (
    ConversationModelFilter,
    GoldAnswerFilter,
    NegativeFeedbackFilter,
    OwnerFilter,
    ProblemFilter,
    ReplyModelFilter,
)
from chat.admin.export import ExportActions
from chat.admin.forms import GoldAnswerForm, ReviewForm
from chat.admin.training import TrainAction
from chat.errors import ChatError
from chat.models import AuditEvent, Conversation, Message, ReviewQueue
from chat.review import selectors, services

ReviewState = Conversation.ReviewState


def origin_label(conversation: Conversation) -> str:
    """Chat, an imported file (its replies not written here), or the API with the key's name, and whether its
    text was kept."""
    if conversation.source == Conversation.Source.IMPORT:
        return "imported"
    if conversation.source != Conversation.Source.API:
        return "chat"
    kept = "" if conversation.content_kept else " · text not kept"
    return f"API · {conversation.api_key_name or 'deleted key'}{kept}"


def _conversation_url(pk: int) -> str:
    return reverse("admin:chat_conversation_change", args=[pk])


class ReviewActions:
    """Bulk approve / flag, for the conversation list and the queue alike."""

    def _review(self, request, queryset, state: str, verb: str):
        ids = list(queryset.values_list("pk", flat=True))
        try:
            done = services.review_set(reviewer=request.user, conversation_ids=ids, state=state)
        except ChatError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return
        self.message_user(
            request, _("%(done)s conversation(s) %(verb)s.") % {"done": done, "verb": verb}, messages.SUCCESS
        )

    @admin.action(description="Approve the selected conversations", permissions=["review"])
    def approve(self, request, queryset):
        self._review(request, queryset, ReviewState.APPROVED, "approved")

    @admin.action(description="Flag the selected conversations (needs attention)", permissions=["review"])
    def flag(self, request, queryset):
        self._review(request, queryset, ReviewState.NEEDS_ATTENTION, "flagged")


@admin.register(Conversation)
class ConversationAdmin(
    RatingColumns, AuditedSearch, ReviewActions, ExportActions, TrainAction, ReviewerOnly, admin.ModelAdmin
):
    list_display = (
        "id",
        "short_title",
        "owner",
        "origin",
        "model_name",
        "message_count",
        "last_activity",
        "thumbs_up",
        "thumbs_down",
        "review_state",
    )
    list_filter = (
        "review_state",
        NegativeFeedbackFilter,
        GoldAnswerFilter,
        ProblemFilter,
        "source",
        "content_kept",
        ConversationModelFilter,
        ReplyModelFilter,
        OwnerFilter,
        "created_at",
    )
    search_fields = ("title", "messages__content")  # shows the box; get_search_results does the search
    date_hierarchy = "created_at"
    list_select_related = ("owner",)
    list_per_page = 50
    raw_id_fields = ("owner", "reviewed_by")
    fields = (
        "owner",
        "title",
        "origin",
        "end_user",
        "model_name",
        "system_prompt",
        "params",
        "created_at",
        "updated_at",
        "review_state",
        "review_note",
        "reviewed_by",
        "reviewed_at",
    )
    readonly_fields = fields
    # And the site-wide delete (superusers only).
    actions = ["approve", "flag", "export_sft", "export_pairs", "train_adapter"]
    change_form_template = "admin/chat/conversation/change_form.html"

    def get_queryset(self, request):
        return selectors.conversations_for_review()

    def get_search_results(self, request, queryset, search_term):
        """Every word in the title or in some message's text. An EXISTS per word instead of Django's join on
        messages, which repeats each conversation once per matching message and then needs a DISTINCT over
        the annotated rows: on 100,000 messages that cost three times the scan itself."""
        for word in smart_split(search_term):
            if word.startswith(('"', "'")) and word[0] == word[-1] and len(word) > 1:
                word = unescape_string_literal(word)  # a "quoted phrase", as Django's own search reads it
            queryset = queryset.filter(
                Q(title__icontains=word)
                | Exists(Message.objects.filter(conversation=OuterRef("pk"), content__icontains=word))
            )
        return queryset, False

    def has_delete_permission(self, request, obj=None):
        # Deleting a transcript is the one write the panel allows, and only a superuser's, always audited.
        return bool(request.user.is_active and request.user.is_superuser)

    @admin.display(description="title", ordering="title")
    def short_title(self, obj):
        # Cut to the column's width by static/chat/admin/lists.css; the whole title in the tooltip.
        return format_html('<span class="cut" title="{}">{}</span>', obj.title, obj.title)

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj):
        return obj.message_count

    @admin.display(description="last activity", ordering="updated_at")
    def last_activity(self, obj):
        return obj.updated_at

    @admin.display(description="source", ordering="source")
    def origin(self, obj):
        return origin_label(obj)

    @admin.display(description="end user (the API request's user)")
    def end_user(self, obj):
        return obj.api_user or "—"

    def get_fields(self, request, obj=None):
        # Only an API request can name the calling program's own user.
        fields = super().get_fields(request, obj)
        return (
            fields
            if obj is not None and obj.source == Conversation.Source.API
            else tuple(f for f in fields if f != "end_user")
        )

    # --- the transcript page

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        """Reached only once Django has checked the view permission: the page is shown, so it is audited."""
        transcript = selectors.transcript_page(conversation=obj, page=request.GET.get("page") or 1)
        services.audit_record(
            actor=request.user,
            action=AuditEvent.Action.OPENED_TRANSCRIPT,
            conversation_id=obj.pk,
            details={"page": transcript.number},
        )
        context.update(
            transcript=transcript,
            review_form=ReviewForm(initial={"state": obj.review_state, "note": obj.review_note}),
            can_review=services.can_review(request.user),
        )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def get_deleted_objects(self, objs, request):
        """A summary instead of Django's list of every message (thousands of rows on a long chat); messages
        go with their conversation, so no per-message permission applies."""
        objs = list(objs)
        counts = selectors.message_counts(conversation_ids=[o.pk for o in objs])  # not a count per row
        listed = [f"{o} (#{o.pk}, {counts.get(o.pk, 0)} messages, owner {o.owner})" for o in objs]
        model_count = {"conversations": len(objs), "messages": sum(counts.values())}
        perms_needed = set() if self.has_delete_permission(request) else {"conversation"}
        return listed, model_count, perms_needed, []

    def delete_model(self, request, obj):
        services.conversations_delete(actor=request.user, conversation_ids=[obj.pk])

    def delete_queryset(self, request, queryset):
        services.conversations_delete(actor=request.user, conversation_ids=list(queryset.values_list("pk", flat=True)))

    # --- the review form and the gold-answer page

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/review/",
                self.admin_site.admin_view(self.review_view),
                name="chat_conversation_review",
            ),
            path(
                "<path:object_id>/gold/<int:message_id>/",
                self.admin_site.admin_view(self.gold_answer_view),
                name="chat_conversation_gold",
            ),
        ]
        return own + super().get_urls()

    def _reviewable(self, request, object_id) -> Conversation:
        if not services.can_review(request.user):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such conversation.")
        return obj

    def review_view(self, request, object_id):
        """POST: set this conversation's review state and note."""
        return require_POST(self._review_post)(request, object_id)

    def _review_post(self, request, object_id):
        obj = self._reviewable(request, object_id)
        form = ReviewForm(request.POST)
        if form.is_valid():
            services.review_set(
                reviewer=request.user,
                conversation_ids=[obj.pk],
                state=form.cleaned_data["state"],
                note=form.cleaned_data["note"],
            )
            self.message_user(request, _("Review saved."), messages.SUCCESS)
        else:
            self.message_user(
                request, _("Review not saved: %(errors)s") % {"errors": form.errors.as_text()}, messages.ERROR
            )
        return HttpResponseRedirect(_conversation_url(obj.pk))

    def gold_answer_view(self, request, object_id, message_id):
        """GET: one reply and the form for its gold answer. POST: store it (empty removes it)."""
        obj = self._reviewable(request, object_id)
        reply = (
            Message.objects.filter(pk=message_id, conversation=obj, role=Message.Role.ASSISTANT)
            .select_related("gold_answer", "parent")
            .first()
        )
        if reply is None:
            raise Http404("No such reply in this conversation.")
        if request.method == "POST":
            form = GoldAnswerForm(request.POST)
            if form.is_valid():
                services.gold_answer_set(
                    reviewer=request.user, message_id=reply.pk, content=form.cleaned_data["content"]
                )
                self.message_user(request, _("Gold answer saved."), messages.SUCCESS)
                return HttpResponseRedirect(_conversation_url(obj.pk) + f"#m{reply.pk}")
        else:
            gold = getattr(reply, "gold_answer", None)
            form = GoldAnswerForm(initial={"content": gold.content if gold else ""})
            services.audit_record(
                actor=request.user,
                action=AuditEvent.Action.OPENED_TRANSCRIPT,
                conversation_id=obj.pk,
                message_id=reply.pk,
                details={"page": "gold_answer"},
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": obj,
            "reply": reply,
            "form": form,
            "title": f"Gold answer for reply #{reply.pk}",
        }
        return render(request, "admin/chat/gold_answer.html", context)


@admin.register(ReviewQueue)
class ReviewQueueAdmin(RatingColumns, ReviewActions, ExportActions, ReviewerOnly, admin.ModelAdmin):
    """Unreviewed conversations, the likeliest to need a look first; each row opens the conversation page."""

    list_display = (
        "open_link",
        "owner",
        "origin",
        "model_name",
        "message_count",
        "thumbs_down",
        "has_problem",
        "updated_at",
    )
    list_display_links = None
    list_select_related = ("owner",)
    list_per_page = 50
    actions = ["approve", "flag", "export_sft", "export_pairs"]

    def get_queryset(self, request):
        return selectors.review_queue()

    def get_ordering(self, request):
        return selectors.QUEUE_ORDER

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # One page per transcript (and one place that audits opening it): the conversation's own.
        if not services.can_review(request.user):
            raise PermissionDenied
        return HttpResponseRedirect(_conversation_url(unquote(object_id)))

    @admin.display(description="conversation")
    def open_link(self, obj):
        return format_html('<a href="{}">{}</a>', _conversation_url(obj.pk), str(obj))

    @admin.display(description="messages")
    def message_count(self, obj):
        return obj.message_count

    @admin.display(description="source")
    def origin(self, obj):
        return origin_label(obj)

    @admin.display(description="👎")
    def thumbs_down(self, obj):
        return obj.thumbs_down

    @admin.display(description="failed or stopped reply")
    def has_problem(self, obj):
        # Words, not Django's ✔/✘ icons: a green tick for "has a failure" reads as "all well".
        return "yes" if obj.has_problem else "—"

    def changelist_view(self, request, extra_context=None):
        heading = {
            "title": "Review queue",
            "subtitle": "Unreviewed conversations: negative feedback first, then failed or stopped replies",
        }
        return super().changelist_view(request, extra_context={**heading, **(extra_context or {})})
