"""Helpers the tests share that are not pytest fixtures: a Kafka broker, a webhook server, alert messages, corrupt
media."""
