"""gunicorn settings for a checkout: ``gunicorn -c gunicorn.conf.py wsgi:app`` (``scripts/run``).

The settings live in the package, ``balance_service/gunicorn_conf.py``, so that an installed wheel
has them too. That file is run here by path rather than imported: importing ``balance_service``
would load the package into gunicorn's master even with ``GUNICORN_PRELOAD=0``, and workers
started after a ``HUP`` would inherit that old code instead of loading the new one.
"""

from pathlib import Path

_settings = Path(__file__).resolve().parent / "balance_service" / "gunicorn_conf.py"
exec(compile(_settings.read_text(), str(_settings), "exec"))
