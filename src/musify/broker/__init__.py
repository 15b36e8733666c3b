"""Kafka: the admin and producer helpers, and the local development broker's lifecycle.

``musify.broker.admin`` checks that a Kafka-protocol broker is reachable and creates
topics; ``musify.broker.kafka`` holds the generator's ``KafkaSink`` (its outage handling
in ``musify.broker.recovery``) and re-exports those admin helpers;
``musify.broker.local`` starts and stops the local Tansu broker behind ``musify broker
start/stop/status``.
"""
