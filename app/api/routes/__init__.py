"""Routers: each is a thin translation between HTTP and the registry."""
