"""Kafka: the admin and producer helpers, and the local development broker's lifecycle.

``musify.broker.kafka`` talks to any Kafka-protocol broker (reachability checks, topic
creation, the generator's ``KafkaSink``); ``musify.broker.local`` starts and stops the
local Tansu broker behind ``musify broker start/stop/status``.
"""
