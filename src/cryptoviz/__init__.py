"""CryptoViz: a self-hosted crypto market-data pipeline."""

__version__ = "0.1.0"
