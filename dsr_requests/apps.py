from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DsrRequestsConfig(AppConfig):
    """Data-subject rights requests: intake, identity proof, workflow, deadlines, fulfilment."""

    name = "dsr_requests"
    verbose_name = _("Rights requests")

    def ready(self):
        """Register the rights requests themselves as a provider (a person's earlier requests)."""
        from dsr_requests import providers

        providers.register(providers.RightsRequestProvider())
