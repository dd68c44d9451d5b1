"""Rights-request providers of the Connect side: tenant records, and the usage counts (no personal data).

Registered in ``RegistrationsConfig.ready``; see artemis_portal/providers.py for the interface.
"""

from django.utils.translation import gettext_lazy as _

from artemis_portal.providers import Erasure, Provider, Withheld
from registrations import services
from registrations.models import Registration


class RegistrationProvider(Provider):
    """The tenant record Atlassian sent when the app was installed on the requester's site.

    Only for a site-scoped request whose account proof was made inside that site; the shared secret is
    never exported (it is a credential of the app, not the requester's data).
    """

    key = "connect_registrations"
    title = _("Your Atlassian site's installation record")
    description = _(
        "The installation record of our app on your Atlassian site: the site's address and key, product, "
        "version numbers, support entitlement number, when the app was installed, enabled, disabled "
        "or removed, and when our staff blocked the site, if they did. We hold it only to serve the app "
        "to your site."
    )
    fields = (
        "client_key",
        "base_url",
        "display_url",
        "product_type",
        "description",
        "service_entitlement_number",
        "plugins_version",
        "server_version",
        "oauth_client_id",
        "state",
        "installed_at",
        "updated_at",
        "enabled_at",
        "disabled_at",
        "uninstalled_at",
        "blocked_at",
    )

    def _queryset(self, subject):
        if not subject.site_client_key:
            return Registration.objects.none()
        return Registration.objects.filter(client_key=subject.site_client_key)

    def find(self, subject):
        return self._queryset(subject).count()

    def export(self, subject):
        yield from self._queryset(subject).values(*self.fields)

    def withheld(self, subject):
        """The site's shared secret (a credential, never exported) and the backup copies; or, for a request
        not about a proven site, why no installation record is included."""
        if not subject.site_client_key:
            return [
                Withheld(
                    what=_("Installation records of Atlassian sites"),
                    reason=_(
                        "We include a site's record only in answer to a request about that site, made by "
                        "someone who proved their Atlassian account from inside it. This request was not, "
                        "so no installation record is included."
                    ),
                )
            ]
        return [
            Withheld(
                what=_("The shared secret Atlassian gave our app for your site"),
                reason=_(
                    "A security credential of our app, not information about you: anyone holding it could "
                    "call our app as your site, so it is never exported."
                ),
            ),
            Withheld(
                what=_("Copies of the installation record in our encrypted backups"),
                reason=_(
                    "They repeat the record included here, as it was on the day of each backup; they are "
                    "kept at most 12 months and used only to restore the service."
                ),
            ),
        ]

    def erase(self, subject):
        """Erase the site's record (or keep it, pending, while the app is installed) and record the erasure.

        The erasure ledger keeps the site erased in backups: a restore deletes the record again, and an
        installed site's record is deleted when the app is uninstalled (registrations/erasure_ledger.py).
        """
        erasure = Erasure()
        if not subject.site_client_key:
            return erasure
        outcome, registration = services.erase_site(
            client_key=subject.site_client_key, reference=subject.exclude_reference, actor="rights-request"
        )
        if outcome == services.SiteErasure.DELETED:
            erasure.erased[str(_("installation records"))] = 1
        elif outcome == services.SiteErasure.PENDING:
            erasure.kept.append(
                str(
                    _(
                        "The installation record of %(site)s is kept while our app is installed there, "
                        "because Atlassian needs it to authenticate your site's requests to the app. It "
                        "is deleted automatically when the app is uninstalled from the site."
                    )
                    % {"site": registration.base_url}
                )
            )
        erasure.kept.append(
            str(
                _(
                    "Encrypted backups of installation records are kept up to 12 months and then deleted; "
                    "they are never used except to restore the service, and a restore erases your site's "
                    "record again."
                )
            )
        )
        return erasure


class UsageCountProvider(Provider):
    """The usage statistics: they exist so the export can say they hold nothing about anyone."""

    key = "usage_counts"
    title = _("Usage statistics")
    description = _(
        "Totals of how often each feature of our app is used per day. They hold no account ID, site or "
        "name, so they are not personal data and nothing in them is about you."
    )
    holds_personal_data = False
    fields = ()
