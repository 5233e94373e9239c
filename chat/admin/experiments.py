"""A/B experiments and the default model, for staff who may train models (``chat.train_model``).

The list shows every experiment; starting one asks for the candidate (a served model or a finished adapter) and
the share of new conversations it gets. A running experiment's page shows the arms side by side — what people
did in each, with 95% intervals — and has the three actions: change the share (the form), end it, promote the
candidate to the site's default. Every action goes through ``chat.experiments.services`` and is audited there.
No person's words are on these pages (counts only), so showing them is not audited.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.utils.translation import gettext_lazy as _

from chat.accounts.selectors import may_train
from chat.errors import ChatError
from chat.experiments import selectors, services
from chat.models import Experiment
from chat.replies import catalog


def _may_train(request) -> bool:
    return may_train(user=request.user)


class StartForm(forms.ModelForm):
    # Help texts are HTML in the admin: no angle brackets in them.
    candidate = forms.ChoiceField(
        help_text=_("a served model, or a finished adapter: its base model, +, its run's name")
    )
    share = forms.FloatField(
        min_value=0.01,
        max_value=1,
        initial=0.2,
        help_text=_("from 0.01 to 1 of new conversations: 0.2 sends 1 in 5"),
    )

    class Meta:
        model = Experiment
        fields = ("candidate", "share")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        default = catalog.site_default()
        names = [m.name for m in (*catalog.served(), *catalog.adapters()) if m.name != default]
        self.fields["candidate"].choices = [(n, n) for n in names]


class ShareForm(forms.ModelForm):
    share = forms.FloatField(min_value=0.01, max_value=1, help_text=_("from 0.01 to 1 of new conversations"))

    class Meta:
        model = Experiment
        fields = ("share",)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("candidate", "control", "share", "state", "started_by", "created_at", "ended_at")
    list_filter = ("state",)
    change_form_template = "admin/chat/experiment/change_form.html"

    def has_module_permission(self, request):
        return _may_train(request)

    def has_view_permission(self, request, obj=None):
        return _may_train(request)

    def has_add_permission(self, request):
        return _may_train(request)

    def has_change_permission(self, request, obj=None):
        return _may_train(request) and (obj is None or obj.state == Experiment.State.RUNNING)

    def has_delete_permission(self, request, obj=None):
        return False  # the record of what was tried stays

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = ShareForm if obj is not None else StartForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("share",) if obj is not None else ("candidate", "share")

    def get_readonly_fields(self, request, obj=None):
        return ("control", "candidate", "state", "started_by", "created_at", "ended_at") if obj else ()

    def save_model(self, request, obj, form, change):
        """Writes go through the services (audited); a refusal is shown, nothing saved."""
        try:
            if change:
                saved = services.experiment_set_share(actor=request.user, experiment_id=obj.pk, share=obj.share)
            else:
                saved = services.experiment_start(
                    actor=request.user, candidate=form.cleaned_data["candidate"], share=form.cleaned_data["share"]
                )
            # The object the admin's "was added" message names: the one saved (its control is set by the service).
            obj.pk, obj.control, obj.candidate, obj.share = saved.pk, saved.control, saved.candidate, saved.share
        except ChatError as exc:
            request.chat_refusal = exc.detail  # the request's, not this admin's: one admin serves every request

    def _refused(self, request):
        refusal = getattr(request, "chat_refusal", None)
        if refusal:
            self.message_user(request, refusal, messages.ERROR)
            return HttpResponseRedirect(request.path)
        return None

    def response_add(self, request, obj, post_url_continue=None):
        return self._refused(request) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        return self._refused(request) or super().response_change(request, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if object_id is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        if not _may_train(request):
            raise PermissionDenied
        experiment = self.get_object(request, unquote(object_id))
        if experiment is None:
            raise Http404("No such experiment.")
        if request.method == "POST" and ("_promote" in request.POST or "_end" in request.POST):
            return self._act(request, experiment.pk)
        extra_context = {
            **(extra_context or {}),
            "arms": selectors.arms(experiment),
            "running": experiment.state == Experiment.State.RUNNING,
            "show_save_and_add_another": False,  # one experiment runs at a time
        }
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _act(self, request, experiment_id: int):
        try:
            if "_promote" in request.POST:
                row = services.model_promote(actor=request.user, model="", experiment_id=experiment_id)
                self.message_user(
                    request,
                    _("%(model_name)s is now the default model for new conversations.")
                    % {"model_name": row.model_name},
                )
            else:
                services.experiment_end(actor=request.user, experiment_id=experiment_id)
                self.message_user(request, _("The experiment has ended; its candidate gets no new conversation."))
        except ChatError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
        return HttpResponseRedirect(request.path)
