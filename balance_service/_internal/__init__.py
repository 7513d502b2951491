"""The service's hand-made parts: each does what a library would, and is kept only for a measured reason.

The rule (issue 17): a part written by hand where a well-kept library does the
job stays only where it buys at least 10 % of throughput (``bench/run.sh``;
``bench/instructions.py`` counts CPU instructions per balance request, the same
on a busy machine) or a feature the library lacks. Instructions per
``GET /v1/balance`` on PostgreSQL (issue 17):

| part | replaces | with it | without it |
| --- | --- | --- | --- |
| ``direct_reads`` | SQLAlchemy Core: AUTOCOMMIT engine, no pre-ping, one retry | 1,048K | 1,418K (+35 %) |
| ``cors_headers`` | Flask-CORS working the headers out per response | 1,048K | 1,131K (+8 %) |
| ``access_line`` | the access line through ``logging`` | 1,048K | 1,093K (+4 %) |
| ``db_deadline`` | (a feature psycopg2 lacks: a deadline kept by the client; issue 21) | 1,021K | 1,011K (-1 %) |
| ``redis_deadline`` | (a feature redis-py lacks: a deadline per call, not per read) | | |
| ``gunicorn_errors`` | (a feature gunicorn lacks: its own error answers in JSON) | | |
| ``host_slots`` | (a feature no library has: a non-blocking semaphore shared by unrelated processes) | | |

``cors_headers`` and ``access_line`` are each under the bar alone; they stay as
the hot path's shortcuts, measured together on ``bench/run.sh`` (bench/README.md):
without them, and without the flat JSON writer removed below, the service
served 88 % of the raw reference's requests (bench/raw_app.py, the same lookup
on a raw psycopg2 connection), under issue 11's 90 %.

Removed by the rule: the flat JSON writer (simplejson writes every answer
again; +4 % instructions without it) and Flask's ``ensure_sync`` remembered per
function (+8 %).
"""
