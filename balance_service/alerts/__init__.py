"""Balance alerts: a message goes out once when a balance falls below a threshold the key owner chose.

``models`` is the service's own ``balance_alerts`` table (the gateway's tables
are never altered), ``targets`` decides which addresses may be called,
``delivery`` signs and sends one webhook (and retries every channel),
``channels`` sends chat, push and e-mail messages through Apprise behind the
address guard, ``isolated`` runs Apprise in a child process for the API,
``messages`` writes what people read, ``checker`` finds crossings and ``cli``
is the ``check-alerts`` command that runs it from cron or in a loop.
"""
