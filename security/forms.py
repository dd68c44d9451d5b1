"""The one field of the second step: a code from the authenticator app, or a backup code."""

from django import forms
from django.utils.translation import gettext_lazy as _


class TokenForm(forms.Form):
    """``otp_token``: six digits from the app, or one of the backup codes."""

    otp_token = forms.CharField(
        label=_("Code"),
        max_length=32,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text", "size": 12}
        ),
    )
