"""Serving one agent: its A2A app (cards, JSON-RPC, REST, middleware, guard, task store) on hypercorn.

An A2A request enters at ``middleware`` (log, auth, body limit), then ``jsonrpc``
or a2a-sdk's REST routes (built in ``app``), reaches the agent's executor
(``executor.TaskAgent``) behind the guard (``mesh.guard.enforcement``), and its
task is kept in ``store``. ``server`` runs the app on hypercorn.
"""
