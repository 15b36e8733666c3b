"""Musify's benchmarks: one module per figure the issues name; `make bench` runs all."""
