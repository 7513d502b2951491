"""WSGI entry point for gunicorn (``wsgi:app``) and the Flask CLI (``flask --app wsgi``) in a checkout."""

from balance_service.wsgi import app

__all__ = ["app"]
