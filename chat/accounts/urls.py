"""/accounts/: sign-up and the Account page here; log in, log out, password change and reset are Django's."""

from django.urls import include, path

from chat.accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/<str:token>/", views.signup, name="signup-invite"),
    path("", views.account_page, name="account"),
    path("data.json", views.data_download, name="account-data"),
    path("delete/", views.account_delete, name="account-delete"),
    path("", include("django.contrib.auth.urls")),
]
