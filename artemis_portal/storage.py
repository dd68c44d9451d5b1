"""Where backups and exports live: a local folder by default, or any Django storage (S3 and others).

On Heroku the web and worker dynos have separate, short-lived disks, so files one process writes for
another (an export the worker builds and the web process serves) need a shared storage there. Both
``BACKUP_STORAGE`` and ``EXPORT_STORAGE`` name one the same way: a ``STORAGES`` alias, or a storage class's
dotted path built with the matching ``*_STORAGE_OPTIONS`` (a JSON object).
"""

import os
import tempfile

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages
from django.utils.module_loading import import_string


def _storage_errors():
    """What a storage backend raises when it cannot be reached: OSError, and botocore's errors for S3."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is pinned, but the local folder needs none of it
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


# Callers catch these, so an unreachable bucket is one clear line or a 503, not a traceback.
STORAGE_ERRORS = _storage_errors()


class StorageConfigError(Exception):
    """A ``*_STORAGE`` setting names neither a STORAGES alias nor an importable class."""


def configured_storage(*, setting, configured, options, local_dir):
    """The storage ``configured`` names (``setting`` is its variable, for the message), else a local folder.

    The local folder keeps its files readable by this user only: they are encrypted, but still nobody
    else's business.
    """
    if not configured:
        return FileSystemStorage(location=local_dir, file_permissions_mode=0o600)
    if configured in settings.STORAGES:
        return storages[configured]
    try:
        storage_class = import_string(configured)
    except ImportError:
        raise StorageConfigError(
            f"{setting} {configured!r} is neither a STORAGES alias nor an importable class"
        ) from None
    return storage_class(**options)


def describe(storage):
    """A short description of where files are, for messages (a folder path or the storage's class)."""
    if isinstance(storage, FileSystemStorage):
        return str(storage.location)
    return f"{type(storage).__module__}.{type(storage).__name__}"


def list_files(storage):
    """The names of the files at the top of ``storage``; none for a local folder not created yet."""
    try:
        return storage.listdir("")[1]
    except FileNotFoundError:
        return []


def publish(storage, name, write, *, replace):
    """Write a file with ``write(out)`` and make it appear under ``name`` only once it is complete.

    In a local folder: a temporary ``.<name>.<random>.partial`` in the same folder, fsynced and renamed
    over ``name`` (atomic), then the folder fsynced so the rename survives a crash. Elsewhere: a local
    temporary file, then one upload. Either way a crash never leaves a half file under ``name``, and
    memory stays bounded. With ``replace``, an existing file of that name is replaced; without, a file
    of that name appearing meanwhile raises ``FileExistsError``. Returns ``(size, what write returned)``.
    """
    if isinstance(storage, FileSystemStorage):
        return _publish_local(storage, name, write)
    with tempfile.TemporaryFile() as spool:
        result = write(spool)
        size = spool.tell()
        spool.seek(0)
        if replace:
            storage.delete(name)
        saved = storage.save(name, File(spool, name=name))
    if saved != name:  # storages rename rather than overwrite: someone wrote the same name meanwhile
        storage.delete(saved)
        raise FileExistsError(f"{name} appeared while it was being written")
    return size, result


def _publish_local(storage, name, write):
    folder = storage.location
    os.makedirs(folder, mode=0o700, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out:
            result = write(out)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        os.replace(temp_path, storage.path(name))
    except BaseException:
        os.unlink(temp_path)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return size, result


def is_partial(name):
    """Whether ``name`` is a local temporary file of ``publish`` (left behind only by a killed process)."""
    return name.startswith(".") and name.endswith(".partial")
