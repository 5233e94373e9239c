"""What the review panel's screens share: who may see what, and list filters that scale."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.main import ALL_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR
from django.db.models.constants import LOOKUP_SEP

from chat.models import AuditEvent
from chat.review import selectors
from chat.review.services import audit_record, can_review

# Fields of the review panel's models that hold what people wrote (or what was written to them): never filtered by
# an address, only searched through the recorded search box.
PEOPLES_WORDS = frozenset(
    {"content", "title", "system_prompt", "review_note", "comment", "text", "error", "sources", "api_user", "name"}
    # a training run's evaluation (the models' answers to held-out questions) and selection (a reviewer's search
    # words); an audit row's details
    | {"metrics", "selection", "details"}
)


class ReadOnly:
    """Rows nobody adds, edits or deletes through the admin. Without change permission Django shows its
    view-only page, and a POST to a change view is refused (403) before any form is read."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def lookup_allowed(self, lookup, value, request=None):
        """No filter on people's words from the address: Django lets any of a model's own fields be filtered by
        the query string (``?content__icontains=…``), a search of everyone's text that the search box would
        have recorded (``AuditedSearch``) and this would not — or, on the training runs, a yes/no oracle on the
        models' answers to held-out questions that a trainer is not shown. Refused (Django's
        ``DisallowedModelAdminLookup``: 400); the search box is the way to search words. No list filter here
        filters on them."""
        if PEOPLES_WORDS.intersection(lookup.split(LOOKUP_SEP)):
            return False
        return super().lookup_allowed(lookup, value, request)


class ReviewerOnly(ReadOnly):
    """Screens of other people's transcripts: only reviewers see them. The model's own view permission is
    deliberately not enough, so the review permission stays the one door."""

    def has_module_permission(self, request):
        return can_review(request.user)

    def has_view_permission(self, request, obj=None):
        return can_review(request.user)

    def has_review_permission(self, request):
        return can_review(request.user)


class RatingColumns:
    """The 👍/👎 columns, from the ``thumbs_up``/``thumbs_down`` annotations of the review selectors."""

    @admin.display(description="👍", ordering="thumbs_up")
    def thumbs_up(self, obj):
        return obj.thumbs_up

    @admin.display(description="👎", ordering="thumbs_down")
    def thumbs_down(self, obj):
        return obj.thumbs_down


class AuditedOpen:
    """Pages of one message or of what hangs on one (feedback, a gold answer) record who opened them.
    ``render_change_form`` runs only once Django has checked the view permission, so a refusal leaves no row."""

    def message_of(self, obj):
        """The message this row is, or belongs to."""
        return obj.message

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        message = self.message_of(obj)
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.OPENED_TRANSCRIPT,
            conversation_id=message.conversation_id,
            message_id=message.pk,
            details={"page": self.opts.model_name},
        )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)


# Parameters that show another page or order of the same matching rows (or all of them on one page): turning
# a page of a search, or sorting it, reads nothing the search's row does not already cover.
SAME_SEARCH_PARAMS = (PAGE_VAR, ORDER_VAR, ALL_VAR)
LAST_SEARCH = "chat_audited_search"  # session key: the search this reviewer's latest ``searched`` row records
SEARCHED_LIST = "_chat_searched_list"  # request attribute: the list (ChangeList) this request built, if any


class AuditedSearch:
    """A search of a list of people's words (messages, titles, comments) reads everyone's text at once, so it
    is recorded like an open: a ``searched`` row with the list, the words and how many rows matched. Showing a
    list is not (docs/review-panel.md: what is audited).

    Whatever the request's method: the list is built, and its search run, for a GET, a HEAD (Django runs the
    GET view and drops the body; the Content-Length still tells a match from none), a POST that shows the list
    or runs an action over it ("select all" acts on every match and says how many). So the row is written
    whenever this request built a searched list, not when the method is GET; a request refused, or whose
    filters were invalid, built none. Only the list page itself records: the export builds the same list and
    records the export, conversation by conversation.

    Turning a page of that search, sorting it or showing all of it writes no second row: the reviewer's session
    remembers the search last recorded (its list, words and filters: everything but ``p``, ``o`` and ``all``),
    and a request that differs from it only there is the same search. Any other search, or the list shown with
    no search, replaces or forgets it, so coming back to a search records it again. The session rather than the
    Referer, which the client writes (a crafted one would hide a search), and rather than "page 1 only", which
    a link straight to ``p=2`` would never record."""

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        setattr(request, SEARCHED_LIST, changelist)
        return changelist

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(request, SEARCHED_LIST, None)  # None: refused, or invalid filters (a redirect)
        if changelist is not None:
            self._search_record(request, changelist)
        return response

    def _search_record(self, request, changelist) -> None:
        query = changelist.query.strip()
        if not query:
            request.session.pop(LAST_SEARCH, None)
            return
        search = self.search_key(request, query=query)
        if request.session.get(LAST_SEARCH) != search:
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.SEARCHED,
                details={"page": self.opts.model_name, "query": query, "results": changelist.result_count},
            )
            request.session[LAST_SEARCH] = search

    def search_key(self, request, *, query: str) -> str:
        """What makes a search this one: the list, the words and every filter, in a fixed order."""
        params = sorted(
            (name, value)
            for name, values in request.GET.lists()
            if name not in (*SAME_SEARCH_PARAMS, SEARCH_VAR)
            for value in values
        )
        return urlencode([("list", self.opts.model_name), (SEARCH_VAR, query), *params])


class TextFilter(admin.ListFilter):
    """A filter typed into a box (exact, case-insensitive): lists of every user would not fit a big site."""

    template = "admin/chat/text_filter.html"
    parameter_name = ""
    lookup = ""

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        if self.parameter_name in params:
            value = params.pop(self.parameter_name)
            self.used_parameters[self.parameter_name] = value[-1] if isinstance(value, list) else value

    def value(self) -> str:
        return (self.used_parameters.get(self.parameter_name) or "").strip()

    def has_output(self):
        return True

    def expected_parameters(self):
        return [self.parameter_name]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.lookup: self.value()}) if self.value() else queryset

    def choices(self, changelist):
        """One entry: the box's name and value, the other filters to keep, and a link that clears it."""
        yield {
            "name": self.parameter_name,
            "value": self.value(),
            "keep": [(k, v) for k, v in changelist.params.items() if k != self.parameter_name],
            "clear": changelist.get_query_string(remove=[self.parameter_name]),
        }


MODEL_NAMES = "_chat_model_names"  # request attribute: the model names this request's filters list


def model_choices(request) -> list[tuple[str, str]]:
    """The models a list may be filtered by (``selectors.model_names``), read once per request: the conversation
    list has two such filters, and a second read would be a second query."""
    if not hasattr(request, MODEL_NAMES):
        setattr(request, MODEL_NAMES, selectors.model_names())
    return [(name, name) for name in getattr(request, MODEL_NAMES)]


class ModelFilter(admin.SimpleListFilter):
    """Rows whose ``lookup`` is the chosen model. The choices are the conversations' models and the ones served
    now (``selectors.model_names``: never a scan of the message table); a model named in the query string is
    applied whether or not it is listed (a reply of a model no longer served nor any conversation's)."""

    title = "model"
    parameter_name = "model_name"
    lookup = "model_name"

    def lookups(self, request, model_admin):
        return model_choices(request)

    def queryset(self, request, queryset):
        return queryset.filter(**{self.lookup: self.value()}) if self.value() else queryset


class YesNoFilter(admin.SimpleListFilter):
    """Filter on a boolean annotation of the list's queryset (``annotation``)."""

    annotation = ""

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(**{self.annotation: self.value() == "yes"})
        return queryset
