"""The id of the request being served, visible to log filters without passing the request around."""

from contextvars import ContextVar

_request_id = ContextVar("request_id", default=None)


def current_request_id():
    """Return the current request's id, or None outside a request."""
    return _request_id.get()


def set_request_id(value):
    """Set the current request id; returns a token for ``reset_request_id``."""
    return _request_id.set(value)


def reset_request_id(token):
    """Restore the request id that was current before ``set_request_id``."""
    _request_id.reset(token)
