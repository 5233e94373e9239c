"""Forms of the account pages. Passwords, reset and change use Django's own forms; these add what they lack."""

from __future__ import annotations

from django import forms
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    """Django's sign-up form with an email address, which a forgotten password is reset through."""

    email = forms.EmailField(help_text="Where a password reset link is sent if you forget your password.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"].strip()
        # One account per address: a reset mail goes to every account with it, which would mix people up.
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                "An account with this email address exists already; log in, or reset its password if you forgot it."
            )
        return email


class AccountDeleteForm(forms.Form):
    """Deleting an account needs its password: a borrowed, signed-in laptop must not be enough. It is checked
    through ``authenticate`` with the request, so login throttling counts wrong guesses here too."""

    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, request, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_password(self):
        password = self.cleaned_data["password"]
        user = self.request.user
        if authenticate(self.request, username=user.get_username(), password=password) != user:
            raise forms.ValidationError("That is not your password; the account was not deleted.")
        return password
