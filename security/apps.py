from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SecurityConfig(AppConfig):
    """Staff two-factor, login lockout, admin session expiry, the staff-access audit and security headers."""

    name = "security"
    verbose_name = _("Security")

    def ready(self):
        from security import signals  # noqa: F401  (connects the audit receivers)
