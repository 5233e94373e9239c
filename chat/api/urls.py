from django.urls import path

from chat.api import views

app_name = "api"
urlpatterns = [
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("models", views.models_list, name="models"),
    path("models/<path:model_id>", views.model_get, name="model"),
]
