"""The admin subcommands of ``rapidmq`` (``status``, ``list``, ``declare`` ...).

They talk to a broker's management HTTP API only, never to its internals, so the
same commands work against RapidMQ and RabbitMQ, locally or over the network.
"""
