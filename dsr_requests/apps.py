from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DsrRequestsConfig(AppConfig):
    """Data-subject rights requests: intake, identity proof, workflow, deadlines, fulfilment."""

    name = "dsr_requests"
    verbose_name = _("Rights requests")

    def ready(self):
        """Report the account IDs the identity proof binds to Atlassian, and erase closed accounts."""
        from dsr_requests import services
        from registrations import personal_data

        personal_data.register_source(
            "rights requests",
            accounts=services.stored_atlassian_accounts,
            erase=services.erase_closed_atlassian_account,
        )
