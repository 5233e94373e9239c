"""URL map."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.accounts.urls")),
    path("v1/", include("chat.api.urls")),
    path("", include("chat.urls")),
]
