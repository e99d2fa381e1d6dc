"""MQTT 3.1, 3.1.1 and 5.0 front end, mapped onto the core as RabbitMQ's MQTT plugin does."""
