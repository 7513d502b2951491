"""WSGI entry point of an installed package: ``gunicorn 'balance_service.wsgi:app'``."""

from balance_service import create_app

app = create_app()
