from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DsrRequestsConfig(AppConfig):
    """Data-subject rights requests: intake, identity proof, workflow, deadlines, fulfilment."""

    name = "dsr_requests"
    verbose_name = _("Rights requests")

    def ready(self):
        """Connect the staff-role sync to ``migrate``; register the background tasks the services queue,
        and what this app holds about people, for fulfilment and for Atlassian's reporting.

        The fulfilment provider exports and erases a person's requests; the account IDs the identity
        proof binds are reported to Atlassian and erased when Atlassian says the account is closed.
        """
        from django.db.models.signals import post_migrate

        from dsr_requests import providers, roles, services, tasks
        from registrations import personal_data

        post_migrate.connect(roles.sync_after_migrate, sender=self, dispatch_uid="dsr_requests.roles")

        services.register_background_task("send_requester_email", tasks.send_requester_email)
        services.register_background_task("fulfil_request", tasks.fulfil_request)
        services.register_background_task("send_lost_links", tasks.send_lost_links)
        providers.register(providers.RightsRequestProvider())
        personal_data.register_source(
            "rights requests",
            accounts=services.stored_atlassian_accounts,
            erase=services.erase_closed_atlassian_account,
        )
