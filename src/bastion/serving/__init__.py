"""Serving gateway: endpoints, routing and the client-facing wire protocols."""
