"""The prompt library's URLs (``/settings/prompts/``), in the ``chat`` namespace with the other pages."""

from django.urls import path

from chat.prompts import views

urlpatterns = [
    path("", views.prompt_list, name="prompts"),
    path("list.json", views.prompt_choices, name="prompt-choices"),
    path("<int:prompt_id>/", views.prompt_edit, name="prompt-edit"),
    path("<int:prompt_id>/delete", views.prompt_delete, name="prompt-delete"),
]
