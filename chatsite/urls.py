"""URL map."""

from django.contrib import admin
from django.urls import include, path

from chat.admin.accounts import password_change as admin_password_change

urlpatterns = [
    # Before the admin's own, which checks the old password unthrottled (chat/accounts/forms.py).
    path("admin/password_change/", admin.site.admin_view(admin_password_change)),
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.accounts.urls")),
    path("v1/", include("chat.api.urls")),
    path("", include("chat.urls")),
]
