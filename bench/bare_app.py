"""The baseline for the benchmark: Flask answering the balance path with a constant JSON body.

It runs under the same gunicorn config as the service, so the difference in
throughput is what the service adds: auth hook, one SQL lookup, presenter.
"""

from flask import Flask, jsonify

app = Flask(__name__)

BODY = {"success": True, "balance": 2, "used": 1, "unlimited_quota": False, "unit": "USD"}


@app.get("/v1/balance")
def balance():
    return jsonify(BODY)


@app.get("/healthz")
def healthz():
    return jsonify(success=True, status="ok")
