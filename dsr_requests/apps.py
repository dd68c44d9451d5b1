from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DsrRequestsConfig(AppConfig):
    """Data-subject rights requests: intake, identity proof, workflow, deadlines, fulfilment."""

    name = "dsr_requests"
    verbose_name = _("Rights requests")
