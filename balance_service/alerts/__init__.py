"""Balance alerts: a webhook fires once when a balance falls below a threshold the key owner chose.

``models`` is the service's own ``balance_alerts`` table (the gateway's tables
are never altered), ``targets`` decides which webhook URLs may be called,
``delivery`` signs and sends one notification, ``checker`` finds crossings and
``cli`` is the ``check-alerts`` command that runs it from cron or in a loop.
"""
