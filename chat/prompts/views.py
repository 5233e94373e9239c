"""The prompt library's page (``/settings/prompts/``: list, create, edit, delete) and the list the chat input's
``/`` reads (``/settings/prompts/list.json``)."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat.errors import ChatError
from chat.prompts import selectors, services


def _page(request, *, editing=None, form=None, error=None, code=None, status=200):
    return render(
        request,
        "chat/prompts.html",
        {
            "prompts": selectors.prompts_of(user=request.user),
            "shared": selectors.shared_prompts_for(user=request.user),
            "may_publish": selectors.may_publish(user=request.user),
            "editing": editing,
            "form": form or {},
            "error": error,
            "code": code,
        },
        status=status,
    )


def _fields(request) -> dict:
    return {
        "name": request.POST.get("name", ""),
        "title": request.POST.get("title", ""),
        "text": request.POST.get("text", ""),
        "published": request.POST.get("published") == "on",
    }


@login_required
@require_http_methods(["GET", "POST"])
def prompt_list(request):
    """GET: the person's prompts and the shared ones, with an empty form. POST: save a new prompt."""
    if request.method == "POST":
        fields = _fields(request)
        try:
            services.prompt_create(user=request.user, **fields)
        except ChatError as exc:
            return _page(request, form=fields, error=exc.detail, code=exc.code, status=400)
        return redirect("chat:prompts")
    return _page(request)


@login_required
@require_http_methods(["GET", "POST"])
def prompt_edit(request, prompt_id: int):
    """GET: the page with this prompt in the form. POST: save it. Another person's prompt is not found."""
    try:
        prompt = selectors.prompt_get_for_owner(user=request.user, prompt_id=prompt_id)
    except ChatError as exc:
        return _page(request, error=exc.detail, code=exc.code, status=404)
    if request.method == "POST":
        fields = _fields(request)
        try:
            services.prompt_update(user=request.user, prompt_id=prompt.pk, **fields)
        except ChatError as exc:
            return _page(request, editing=prompt, form=fields, error=exc.detail, code=exc.code, status=400)
        return redirect("chat:prompts")
    form = {"name": prompt.name, "title": prompt.title, "text": prompt.text, "published": prompt.published}
    return _page(request, editing=prompt, form=form)


@login_required
@require_POST
def prompt_delete(request, prompt_id: int):
    try:
        services.prompt_delete(user=request.user, prompt_id=prompt_id)
    except ChatError as exc:
        return _page(request, error=exc.detail, code=exc.code, status=404)
    return redirect("chat:prompts")


@login_required
@require_GET
def prompt_choices(request):
    """The prompts ``/`` offers in the chat input: the person's own and the published ones, own first by name."""
    return JsonResponse({"prompts": selectors.prompts_for_input(user=request.user)})
