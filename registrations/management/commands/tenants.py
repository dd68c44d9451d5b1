"""List every tenant (site) with its platforms: site URL, cloud ID, platforms, state, installed date."""

import json as json_module

from django.core.management.base import BaseCommand

from registrations import forge


class Command(BaseCommand):
    help = (
        "List every tenant (site) with its platforms (connect, forge), state and installed date; no secrets."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON array, for scripts.")

    def handle(self, *args, json: bool = False, **options):  # noqa: A002 (the option's name)
        tenants = forge.list_tenants()
        if json:
            self.stdout.write(json_module.dumps([t.as_dict() for t in tenants], indent=2))
            return
        self.stdout.write(f"{'site':40} {'cloud ID':38} {'platforms':15} {'state':12} installed")
        for tenant in tenants:
            installed = tenant.installed_at.date().isoformat() if tenant.installed_at else "-"
            platforms = ",".join(sorted({p["platform"] for p in tenant.platforms}))
            site, cloud_id = tenant.site_url or "-", tenant.cloud_id or "-"
            self.stdout.write(f"{site:40} {cloud_id:38} {platforms:15} {tenant.state:12} {installed}")
        self.stdout.write(f"{len(tenants)} tenant(s).")
