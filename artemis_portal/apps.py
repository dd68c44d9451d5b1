from django.apps import AppConfig


class ArtemisPortalConfig(AppConfig):
    """Project package as an app, so its management commands and templates are found."""

    name = "artemis_portal"
    verbose_name = "Artemis portal"

    def ready(self):
        from artemis_portal import checks  # noqa: F401  (registers the deploy checks)
