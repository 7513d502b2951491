"""The service's hand-made parts: each does what a library would, and is kept only for a measured reason.

The rule (issue 17): a part written by hand where a well-kept library does the
job stays only where it buys at least 10 % (CPU instructions per balance
request, ``bench/instructions.py``, which counts the same on a busy machine) or
a feature the library lacks. Each module says what it replaces and its figure.
The figures of issue 17, instructions per ``GET /v1/balance`` on PostgreSQL:

FIGURES

Removed by the same rule: Flask's ``ensure_sync`` remembered per function
(8 %, under the bar).
"""
