"""/accounts/: sign-up, the Account page and the throttled password change here; log in, log out and reset are
Django's."""

from django.urls import include, path

from chat.accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/<str:token>/", views.signup, name="signup-invite"),
    path("", views.account_page, name="account"),
    path("data.json", views.data_download, name="account-data"),
    path("delete/", views.account_delete, name="account-delete"),
    path("password_change/", views.PasswordChange.as_view(), name="password_change"),  # before Django's own
    path("", include("django.contrib.auth.urls")),
]
