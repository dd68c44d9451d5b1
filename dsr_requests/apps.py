from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DsrRequestsConfig(AppConfig):
    """Data-subject rights requests: intake, identity proof, workflow, deadlines, fulfilment."""

    name = "dsr_requests"
    verbose_name = _("Rights requests")

    def ready(self):
        """Register what this app holds about people, for fulfilment and for Atlassian's reporting.

        The fulfilment provider exports and erases a person's requests; the account IDs the identity
        proof binds are reported to Atlassian and erased when Atlassian says the account is closed.
        """
        from dsr_requests import providers, services
        from registrations import personal_data

        providers.register(providers.RightsRequestProvider())
        personal_data.register_source(
            "rights requests",
            accounts=services.stored_atlassian_accounts,
            erase=services.erase_closed_atlassian_account,
        )
