"""Musify: a streaming-analytics pipeline for a simulated music service."""

__version__ = "0.1.0"
