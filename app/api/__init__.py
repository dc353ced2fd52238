"""HTTP layer: app factory, routers, schemas, error rendering. Talks to the registry only, never to TensorFlow."""

from app.api.app import create_app

__all__ = ["create_app"]
