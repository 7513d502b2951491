"""gunicorn settings for a checkout: ``gunicorn -c gunicorn.conf.py wsgi:app`` (``scripts/run``).

The settings live in the package, ``balance_service/gunicorn_conf.py``, so that an installed wheel
has them too; they are run here by path, as ``balance-service serve`` gives gunicorn that file.
"""

from pathlib import Path

_settings = Path(__file__).resolve().parent / "balance_service" / "gunicorn_conf.py"
exec(compile(_settings.read_text(), str(_settings), "exec"))
