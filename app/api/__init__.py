"""HTTP layer: app factory, routers, schemas, error rendering. Talks to the registry only, never to TensorFlow.

``create_app`` is imported lazily, so light modules of this package (``access``) can be used without loading the
registry and TensorFlow (the CLI checks its start-up policy before planning slots).
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.api.app import create_app

        return create_app
    raise AttributeError(f"module 'app.api' has no attribute {name!r}")
