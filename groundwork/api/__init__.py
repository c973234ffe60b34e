"""The HTTP API: :func:`create_app` over a :class:`~groundwork.container.Container`."""

from groundwork.api.app import create_app

__all__ = ["create_app"]
