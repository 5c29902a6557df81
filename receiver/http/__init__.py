"""HTTP surface: app factory, handlers, auth, health, metrics."""
