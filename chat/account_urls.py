"""/accounts/: sign-up and the Account page here; log in, log out, password change and reset are Django's."""
from django.urls import include, path

from chat import account_views

urlpatterns = [
    path("signup/", account_views.signup, name="signup"),
    path("signup/<str:token>/", account_views.signup, name="signup-invite"),
    path("", account_views.account_page, name="account"),
    path("data.json", account_views.data_download, name="account-data"),
    path("delete/", account_views.account_delete, name="account-delete"),
    path("", include("django.contrib.auth.urls")),
]
