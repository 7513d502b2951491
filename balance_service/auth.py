"""The ``before_request`` hook of the API blueprints: ``Authorization: Bearer sk-…`` to ``g.token`` and ``g.user``.

Only the HTTP side lives here; the rules are in ``gateway/rules.py``.
"""

from __future__ import annotations

import logging

from flask import g, request

from .errors import ApiError
from .gateway.keys import lookup
from .gateway.rules import KeyRejected, OwnerDisabled, OwnerMissing, check_can_read, check_owner, normalize_key

log = logging.getLogger(__name__)

#: The HTTP status each refusal of the gateway's rules is answered with.
_STATUS = {KeyRejected: 401, OwnerMissing: 404, OwnerDisabled: 403}


def parse_key(header: str | None) -> str:
    """The stored form of the key in an Authorization header value: ``Bearer sk-<key>`` or ``Bearer <key>``."""
    if header is None:
        raise ApiError(401, "No Authorization header")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise ApiError(401, "Authorization header must be 'Bearer sk-<key>'")
    try:
        return normalize_key(value)
    except KeyRejected as e:
        raise ApiError(401, str(e)) from None


def authenticate() -> None:
    """``before_request`` hook: put ``g.token`` and ``g.user`` in place, or refuse."""
    req = request._get_current_object()  # once: every proxy lookup costs, and this runs on every request
    if req.method == "OPTIONS":
        return  # CORS preflight carries no credentials by design.
    key = parse_key(req.headers.get("Authorization"))
    try:
        token, user = lookup(key)
        check_can_read(token)  # expired and exhausted keys may read; creating an alert asks again
        state = g._get_current_object()
        state.token = token
        state.user = check_owner(user)
    except tuple(_STATUS) as e:
        if isinstance(e, OwnerMissing):
            # The answer is the documented message only; the detail goes here (the line carries the request id).
            log.warning("token %s: its owner, user %s, does not exist or was deleted", token.id, token.user_id)
        status = next(code for kind, code in _STATUS.items() if isinstance(e, kind))
        raise ApiError(status, str(e)) from None
    log.debug("authenticated token %s of user %s", token.id, user.id)
