"""Apprise for the API's workers, in a short-lived child process: check a notify_url, send a test message.

Apprise stays out of serving workers (``channels.py``: one plugin costs a
process ~8.5 MB, a worker has under 1 MB to spare), and a module once imported
stays for the life of the process. So the two Apprise steps the API takes run
in a child started with the worker's own interpreter (``python -m
balance_service.alerts.isolated``): it reads one JSON request on stdin, prints
one JSON answer and exits, taking Apprise's memory with it. The URL goes
through the pipe, never the command line (``ps`` would show it). Creating a
notify alert or pressing the test button costs a child's start-up
(~0.3-0.5 s); both are rare, and the test button is limited to once a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .delivery import DeliveryResult

#: Seconds a child may take to start and import Apprise, on top of the work it was given.
STARTUP_ALLOWANCE = 10.0
#: Where the ``balance_service`` package is, so the child finds this very code wherever it was started from.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _run(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The child's answer to ``request``; ``{"ok": false, "error": …}`` when it could not give one in time."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout + STARTUP_ALLOWANCE,
            check=False,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])),
            },
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"not done within {timeout + STARTUP_ALLOWANCE:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        # Its stderr may quote the URL: only the fact reaches the caller.
        return {"ok": False, "error": f"the sending process failed (exit status {done.returncode})"}
    return json.loads(lines[-1])


def check_notify_url(url: str) -> str | None:
    """None when Apprise can make a notifier of ``url``, else the reason (naming ``notify_url``)."""
    answer = _run({"op": "check", "url": url}, timeout=5.0)
    return None if answer["ok"] else answer["error"]


def send(channel: str, target: str, smtp_url: str | None, title: str, body: str, how: Any) -> DeliveryResult:
    """Send one message of a ``notify`` or ``email`` alert from a child; ``how`` is a ``channels.Sending``."""
    request = {
        "op": "send",
        "channel": channel,
        "target": target,
        "smtp_url": smtp_url,
        "title": title,
        "body": body,
        "how": asdict(how),
    }
    answer = _run(request, timeout=how.deadline or 30.0)
    return DeliveryResult(answer["ok"], answer.get("attempts", 0), answer.get("error"))


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    from . import channels  # the child's whole purpose: Apprise is loaded here

    if request["op"] == "check":
        try:
            channels.notifier(request["url"])
        except channels.ChannelError as e:
            return {"ok": False, "error": e.message}
        return {"ok": True}
    how = channels.Sending(**request["how"])
    if request["channel"] == "email":
        result = channels.send_email(request["smtp_url"], request["target"], request["title"], request["body"], how)
    else:
        result = channels.send_notify(request["target"], request["title"], request["body"], how)
    return {"ok": result.ok, "attempts": result.attempts, "error": result.error}


def main() -> None:
    print(json.dumps(_answer(json.load(sys.stdin))))


if __name__ == "__main__":
    main()
