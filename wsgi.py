"""WSGI entry point for gunicorn (``wsgi:app``) and the Flask CLI (``flask --app wsgi``)."""

from balance_service import create_app

app = create_app()
