"""Benchmarks of CryptoViz against real Kafka and PostgreSQL: ``python -m benchmarks.run`` (``make bench``)."""
