#!/usr/bin/env python3
"""Django's command-line utility for the Artemis privacy portal."""

import os
import sys


def main():
    """Run a management command."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
