"""Alertmanager webhook receiver that rolls a Kubernetes canary back to its stable version."""

__version__ = "0.1.0"
