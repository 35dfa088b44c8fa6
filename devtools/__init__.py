"""Helpers for running the service on a developer's machine (`make run`)."""
