"""A moto server for the tests (the same one the demo uses)."""

from standins.aws import free_port, moto_server

__all__ = ["free_port", "moto_server"]
