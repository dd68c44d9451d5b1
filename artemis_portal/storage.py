"""Where the portal keeps its own files (backups, data exports): a configured storage, else a local folder.

On Heroku web, worker and scheduler run on separate dynos, each with an ephemeral disk of its own, so a
file one of them writes to a local folder is invisible to the others and gone at the next restart. Each
kind of file therefore has a ``<KIND>_STORAGE`` setting (a ``STORAGES`` alias or a storage class's dotted
path, e.g. ``storages.backends.s3.S3Storage``) with ``<KIND>_STORAGE_OPTIONS`` (a JSON object of keyword
arguments for that class); left empty it is a local folder, which is right for a single machine and the
SQLite demo. One function builds both, so backups and exports cannot drift apart in how they read it.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, storages
from django.utils.module_loading import import_string


def _storage_errors():
    """What a storage backend raises when it cannot be reached: OSError, and botocore's errors for S3."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is pinned, but the local folder needs none of it
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


# Callers catch these, so an unreachable bucket is one line (a command) or a 503 (a page), not a traceback.
# A missing file is FileNotFoundError, an OSError: catch it first where "missing" means something else.
STORAGE_ERRORS = _storage_errors()


def configured_storage(setting, *, local_dir):
    """The storage the setting ``setting`` names (built with ``<setting>_OPTIONS``), else a local folder.

    The local folder keeps files private to the portal's user (0600). Raises ``ImproperlyConfigured``, with
    the setting's name in one line, when the value is neither a ``STORAGES`` alias nor an importable class.
    """
    configured = getattr(settings, setting)
    if not configured:
        return FileSystemStorage(location=local_dir, file_permissions_mode=0o600)
    if configured in settings.STORAGES:
        return storages[configured]
    try:
        storage_class = import_string(configured)
    except ImportError:
        raise ImproperlyConfigured(
            f"{setting} {configured!r} is neither a STORAGES alias nor an importable class"
        ) from None
    return storage_class(**getattr(settings, f"{setting}_OPTIONS"))


def describe_storage(storage):
    """A short description of where files are, for messages (a folder path or the storage's class)."""
    if isinstance(storage, FileSystemStorage):
        return str(storage.location)
    return f"{type(storage).__module__}.{type(storage).__name__}"


def list_files(storage):
    """The names of the files at the top of ``storage``; none when its local folder does not exist yet."""
    try:
        return storage.listdir("")[1]
    except FileNotFoundError:
        return []
