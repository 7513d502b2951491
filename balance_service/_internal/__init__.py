"""The service's hand-made parts: each does what a library would, and is kept only for a measured reason.

The rule (issue 17): a part written by hand where a well-kept library does the
job stays only where it buys at least 10 % (CPU instructions per balance
request, ``bench/instructions.py``, which counts the same on a busy machine) or
a feature the library lacks. Each module says what it replaces and its figure.
The figures of issue 17, instructions per ``GET /v1/balance`` on PostgreSQL:

| part | replaces | with it | without it |
| --- | --- | --- | --- |
| ``direct_reads`` | SQLAlchemy Core: AUTOCOMMIT engine, no pre-ping, one retry | 1,048K | 1,418K (+35 %) |
| ``cors_headers`` | Flask-CORS working the headers out per response | 1,048K | 1,131K (+8 %) |
| ``access_line`` | the access line through ``logging`` | 1,048K | 1,093K (+4 %) |
| ``flat_json`` | simplejson for every answer | 1,048K | 1,089K (+4 %) |
| ``redis_deadline`` | (a feature redis-py lacks: a deadline per call, not per read) | | |
| ``gunicorn_errors`` | (a feature gunicorn lacks: its own error answers in JSON) | | |
| ``db_deadline`` | (a feature psycopg2 lacks: a deadline kept by the client; issue 21) | 1,021K | 1,011K (-1 %) |

The reference app (bench/raw_app.py: the same lookup on a raw psycopg2
connection, in bare Flask) takes 543K. Instruction counts understate the last
three: issue 11 measured the access line through ``logging`` at 140-440 µs of
CPU per request under wrk. Whether they stay is decided on ``bench/run.sh``
throughput (the closing note of issue 17 and bench/README.md).

Removed by the same rule: Flask's ``ensure_sync`` remembered per function
(8 %, under the bar).
"""
