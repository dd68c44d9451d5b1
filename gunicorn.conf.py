"""gunicorn settings; the worker count comes from WEB_CONCURRENCY (Heroku sets it per dyno size)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Heroku's router is the only client that reaches the dyno; trust its X-Forwarded-* headers.
forwarded_allow_ips = "*"
accesslog = None  # RequestIdMiddleware writes the access line, with the request id
errorlog = "-"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
