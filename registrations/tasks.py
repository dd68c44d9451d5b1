"""Background jobs of the registry (django-tasks, as dsr_requests.tasks): each only calls a service.

Linking a Forge installation to the Connect registration of its site reads the registry and is not
needed to answer Forge's lifecycle call, which must answer within Forge's 5-second timeout; so the view
records the event and hands the linking to the queue (``TASKS_BACKEND``: inline in tests and the demo,
``db_worker`` in production).
"""

from django_tasks import task

from registrations import forge


@task()
def link_forge_installation(installation_id):
    """Link one Forge installation to its site's Connect registration; returns whether it is linked."""
    return forge.link_installation(installation_id=installation_id, actor="forge") is not None


@task()
def link_connect_registration(client_key):
    """After a Connect install: link the Forge installations of the same site; returns how many."""
    return forge.link_registration(client_key=client_key, actor="atlassian")
