"""URL map."""

from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from chat.admin.accounts import password_change as admin_password_change

urlpatterns = [
    # Before the admin's own, which checks the old password unthrottled (chat/accounts/forms.py).
    path("admin/password_change/", admin.site.admin_view(admin_password_change)),
    path("admin/", admin.site.urls),
    path("accounts/", include("chat.accounts.urls")),
    path("v1/", include("chat.api.urls")),
    # The pages' translations: the script's catalog (window.gettext, before the page's modules) and Django's
    # set_language for the pages of people not signed in (docs/translating.md).
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("chat.urls")),
]
