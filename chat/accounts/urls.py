"""/accounts/: sign-up, the Account page, the bounded password reset and the throttled password change here; log
in, log out and the reset link's pages are Django's."""

from django.urls import include, path

from chat.accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/<str:token>/", views.signup, name="signup-invite"),
    path("", views.account_page, name="account"),
    path("data.json", views.data_download, name="account-data"),
    path("delete/", views.account_delete, name="account-delete"),
    path("language/", views.language_choice, name="account-language"),
    # Before Django's own: the reset mail bounded, the old password throttled.
    path("password_reset/", views.PasswordReset.as_view(), name="password_reset"),
    path("password_change/", views.PasswordChange.as_view(), name="password_change"),
    path("", include("django.contrib.auth.urls")),
]
