"""Every fact about the gateway (one-api / new-api) this service relies on, stated once.

- ``tables``: the ``users``, ``tokens``, ``logs`` and ``options`` tables, status codes, and the one cache
  (``TTL``) of what is read from the gateway's schema and options.
- ``rules``: what a key looks like, when a key or its owner may not be used, what a balance is.
- ``options``: the one reader of the ``options`` table, parsed as the gateways parse it.
- ``money``: ``Currency``, the one conversion between quota and amounts (display unit, USD, cents).
- ``keys``: the one-statement key lookup and its typed rows.
- ``logs``: the usage queries on the ``logs`` table (SQL and ClickHouse).
- ``operations``: what the operator commands do to the gateway's tables (create, top up, disable).
- ``doctor``: ``flask doctor``, which inspects the gateway database and recommends indexes.

Nothing outside this package names a gateway table, column, option key or status code.
"""
