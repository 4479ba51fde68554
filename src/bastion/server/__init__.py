"""The HTTP server: app factory, middleware, error mapping and routes."""
