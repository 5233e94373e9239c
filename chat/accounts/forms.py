"""Forms of the account pages. Passwords, reset and change use Django's own forms; these add what they lack."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.forms import PasswordChangeForm, UserCreationForm
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables


def password_is_theirs(request, password: str) -> bool:
    """Whether ``password`` is the signed-in person's, checked as a login is: through ``authenticate`` with the
    request, so django-axes counts a wrong one against the client address with wrong logins, and refuses even
    the right one while that address is locked (its middleware then answers with the lockout page). Every check
    of a signed-in person's password comes here: checked directly, a signed-in browser would be an unthrottled
    password oracle."""
    user = request.user
    return authenticate(request, username=user.get_username(), password=password) == user


class SignupForm(UserCreationForm):
    """Django's sign-up form with an email address, which a forgotten password is reset through."""

    email = forms.EmailField(help_text=_("Where a password reset link is sent if you forget your password."))

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"].strip()
        # One account per address: a reset mail goes to every account with it, which would mix people up.
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                _("An account with this email address exists already; log in, or reset its password if you forgot it.")
            )
        return email


class LanguageForm(forms.Form):
    """The Account page's language choice: one of settings.LANGUAGES, or "" for the browser's."""

    language = forms.ChoiceField(
        label=_("Language"),
        required=False,
        choices=lambda: [("", _("The browser's language")), *settings.LANGUAGES],
    )


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Django's password change form, its old password checked as a login is (``password_is_theirs``)."""

    def __init__(self, user, *args, request=None, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request

    @sensitive_variables("old_password")
    def clean_old_password(self):
        old_password = self.cleaned_data["old_password"]
        if not password_is_theirs(self.request, old_password):
            raise forms.ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


class AdminThrottledPasswordChangeForm(ThrottledPasswordChangeForm):
    """The same for the admin's own password change page (Django's admin form only adds this)."""

    required_css_class = "required"


class AccountDeleteForm(forms.Form):
    """Deleting an account needs its password: a borrowed, signed-in laptop must not be enough. It is checked
    through ``authenticate`` with the request, so login throttling counts wrong guesses here too."""

    password = forms.CharField(
        label=_("Your password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, request, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    @sensitive_variables("password")
    def clean_password(self):
        password = self.cleaned_data["password"]
        if not password_is_theirs(self.request, password):
            raise forms.ValidationError(_("That is not your password; the account was not deleted."))
        return password
