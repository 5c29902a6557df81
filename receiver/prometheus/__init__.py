"""Adapter for Prometheus' HTTP API: instant queries with retries, bounded waits."""
