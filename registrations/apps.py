from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RegistrationsConfig(AppConfig):
    """Atlassian Connect: tenant registry, descriptor, lifecycle, JWT, backups, usage counts."""

    name = "registrations"
    verbose_name = _("Connect registrations")

    def ready(self):
        """Tell rights-request fulfilment what this app holds about people."""
        from artemis_portal import providers
        from registrations.providers import RegistrationProvider, UsageCountProvider

        providers.register(RegistrationProvider())
        providers.register(UsageCountProvider())
