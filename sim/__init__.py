"""Simulators that speak the real Kubernetes and Slack HTTP APIs, for tests and the demo."""
