"""Training runs in the panel: the list, a run's page (its state live while it is queued or running; its record;
once done, the held-out evaluation — base and candidate side by side per gold answer), its Cancel, and the
conversation list's action that starts a run on the listed conversations.

Everything here needs ``chat.train_model`` (``chat.training.services.can_train``). A run's page shows held-out
prompts and gold answers, people's words: showing them writes an ``opened_transcript`` audit row per held-out
conversation, as opening each transcript would.
"""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from chat.admin.common import ReadOnly
from chat.errors import ChatError
from chat.models import TrainingRun
from chat.replies import catalog
from chat.review.services import can_review
from chat.training import liveness, selectors, services

State = TrainingRun.State
ACTIVE = (State.QUEUED, State.RUNNING)


def _duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def progress_text(run: TrainingRun) -> str:
    """ "step 12/40 · loss 0.83 · 20 examples · 1 min 05 s left", or "—" before the first step."""
    p = run.progress or {}
    if not p.get("steps"):  # no step yet: say what it waits for, not a dash
        waiting = {State.QUEUED: "waiting for a training worker", State.RUNNING: "preparing: the base and the examples"}
        return waiting.get(run.state, "—")
    loss = f"{p['loss']:.3f}" if isinstance(p.get("loss"), (int, float)) else "—"
    left = "" if run.state != State.RUNNING else f" · {_duration(p.get('seconds_left'))} left"
    return f"step {p.get('step')}/{p['steps']} · loss {loss} · {p.get('examples')} examples{left}"


RECORDED = ("selection", "hyperparameters", "library_versions")


class TrainerOnly(ReadOnly):
    """Only staff who may train see these screens."""

    def has_module_permission(self, request):
        return services.can_train(request.user)

    def has_view_permission(self, request, obj=None):
        return services.can_train(request.user)


@admin.register(TrainingRun)
class TrainingRunAdmin(TrainerOnly, admin.ModelAdmin):
    list_display = ("name", "base_model", "state", "progress_column", "started_by_name", "created_at", "flags")
    list_filter = ("state", "base_model", "uses_deleted_data")
    search_fields = ("name",)
    list_per_page = 50

    @admin.display(description="progress")
    def progress_column(self, obj):
        return progress_text(obj)

    @admin.display(description="notes")
    def flags(self, obj):
        notes = []
        if obj.uses_deleted_data:
            notes.append("uses deleted data")
        evaluation = (obj.metrics or {}).get("evaluation") or {}
        if evaluation.get("worse_than_default"):
            notes.append("worse than the default")
        return ", ".join(notes) or "—"

    def get_urls(self):
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name="chat_trainingrun_changelist"),
            path(
                "<path:object_id>/cancel/", self.admin_site.admin_view(self.cancel_view), name="chat_trainingrun_cancel"
            ),
            path(
                "<path:object_id>/change/", self.admin_site.admin_view(self.change_view), name="chat_trainingrun_change"
            ),
        ]

    def _run(self, request, object_id) -> TrainingRun:
        if not services.can_train(request.user):
            raise PermissionDenied
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404("No such training run.")
        return run

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The run's page: state and progress (refreshing itself while queued or running), its record, and
        once done the evaluation table. Showing held-out texts is audited."""
        run = self._run(request, object_id)
        evaluation = (run.metrics or {}).get("evaluation") or {}
        rows = []
        if evaluation.get("rows"):
            # The held-out questions and gold answers are people's words, and so are the models' answers to them
            # (a model often says the question again): reviewers only (audited), the figures to all.
            may_read = can_review(request.user)
            texts = selectors.heldout_texts(run_id=run.pk) if may_read else {}
            if texts:
                services.heldout_read(actor=request.user, run=run)
            for row in evaluation["rows"]:
                shown = {**row, **texts.get(row.get("message"), {"prompt": None, "gold": None})}
                if not may_read:
                    for side in ("candidate", "base"):
                        shown[side] = {k: v for k, v in (row.get(side) or {}).items() if k != "answer"}
                rows.append(shown)
        default = evaluation.get("default") or {}
        current = catalog.site_default()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": run,
            "title": f"Training run {run.name}",
            "run": run,
            "progress": progress_text(run),
            "active": run.state in ACTIVE,
            "refresh_s": settings.CHAT_LIVE_REFRESH_S,
            "counts": selectors.example_counts(run_id=run.pk),
            "workers": liveness.alive() if run.state == State.QUEUED else None,
            "evaluation": evaluation,
            "rows": rows,
            # the record's dictionaries as JSON (what the command line and the export write), not Python's repr
            "record": {k: json.dumps(getattr(run, k), ensure_ascii=False, sort_keys=True) for k in RECORDED},
            "texts_shown": can_review(request.user),  # without it a row's words are hidden, not gone
            "means": evaluation.get("means") or {},
            "default": default,
            "current_default": current,
            "default_changed": bool(default) and default.get("name") != current,
            "training": (run.metrics or {}).get("training") or {},
        }
        return render(request, "admin/chat/trainingrun/run.html", context)

    def cancel_view(self, request, object_id):
        """POST: cancel the run (a queued one at once; a running one after the step it is on)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._run(request, object_id)
        try:
            services.run_cancel(actor=request.user, run_id=run.pk, reason=request.POST.get("reason", ""))
        except ChatError as err:
            self.message_user(
                request, _("%(code)s: %(detail)s") % {"code": err.code, "detail": err.detail}, messages.ERROR
            )
        else:
            self.message_user(request, _("Training run %(name)s: cancel asked.") % {"name": run.name}, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:chat_trainingrun_change", args=[run.pk]))


class TrainForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=60, help_text=_("letters, digits, - and _; served as <base>+<name>")
    )
    base = forms.ChoiceField(label=_("Base model"), help_text=_("the served model the adapter adapts"))
    # The hyperparameters people change most (inference/training.py, Hyperparameters, has them all; the rest
    # from the command line's --hyperparameters). Blank: this deployment's default, which the run's page records.
    rank = forms.IntegerField(
        label=_("LoRA rank"),
        required=False,
        min_value=1,
        max_value=256,
        help_text=_("larger learns more and makes a larger adapter"),
    )
    epochs = forms.IntegerField(
        label=_("Epochs"), required=False, min_value=1, max_value=50, help_text=_("passes over the gold answers")
    )
    learning_rate = forms.FloatField(
        label=_("Learning rate"), required=False, min_value=1e-6, max_value=0.1, help_text=_("of the SFT phase")
    )
    seed = forms.IntegerField(
        label=_("Seed"),
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text=_("draws the held-out share and the training order: the same seed, the same run"),
    )
    HYPERPARAMETERS = ("rank", "epochs", "learning_rate", "seed")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base"].choices = [(m.name, m.label or m.name) for m in settings.CHAT_SERVED_MODELS]
        for name in self.HYPERPARAMETERS:  # what a blank field means, shown where it is typed
            default = settings.CHAT_TRAINING_HYPERPARAMETERS.get(name)
            self.fields[name].widget.attrs["placeholder"] = _("default") if default is None else str(default)

    def hyperparameters(self) -> dict:
        """The values typed in; blank ones are left to the deployment's defaults."""
        return {name: self.cleaned_data[name] for name in self.HYPERPARAMETERS if self.cleaned_data[name] is not None}


class TrainAction:
    """For the conversation list: "Train an adapter on these conversations". Asks for the run's name and base
    on a page of its own, then starts the run on the selected rows (all the filtered list's with "select all")
    and records the list's filters as the run's selection."""

    @admin.action(description="Train an adapter on these conversations", permissions=["train"])
    def train_adapter(self, request, queryset):
        if "apply" in request.POST:
            form = TrainForm(request.POST)
            if form.is_valid():
                selection = {
                    "filters": {k: v for k, v in request.GET.items() if k != "p"},
                    "all_filtered": request.POST.get("select_across") == "1",
                    "selected": len(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)),
                }
                try:
                    run = services.run_start(
                        actor=request.user,
                        name=form.cleaned_data["name"],
                        base=form.cleaned_data["base"],
                        conversations=queryset,
                        selection=selection,
                        hyperparameters=form.hyperparameters(),
                    )
                except ChatError as err:
                    form.add_error(None, f"{err.code}: {err.detail}")
                else:
                    self.message_user(
                        request, _("Training run %(name)s queued.") % {"name": run.name}, messages.SUCCESS
                    )
                    return HttpResponseRedirect(reverse("admin:chat_trainingrun_change", args=[run.pk]))
        else:
            form = TrainForm(initial={"base": catalog.site_default()})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Train an adapter on these conversations",
            "form": form,
            "count": queryset.count(),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "query": request.GET.urlencode(),
        }
        return render(request, "admin/chat/train_adapter.html", context)

    def has_train_permission(self, request):
        return services.can_train(request.user)
