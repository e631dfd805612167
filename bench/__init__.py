"""Benchmarks run as `python -m bench.<name>`, each printing one JSON object."""
