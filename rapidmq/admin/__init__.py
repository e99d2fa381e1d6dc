"""The management HTTP API, RabbitMQ-compatible, and Prometheus ``/metrics``.

:func:`rapidmq.admin.app.create_app` builds the Starlette app for one
:class:`~rapidmq.server.Server`; :func:`rapidmq.admin.http.serve_http` runs it
on Hypercorn inside the broker's task group.  Each module holds the routes of
one part of the API (``ROUTES``), reading the core through ``statistics()`` and
plain attributes, and changing it only through the same calls the protocol
front ends use.
"""
