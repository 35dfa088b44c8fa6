"""The service's settings, unchanged but for a URLconf that adds the bare baseline route."""

from ticketing_orders.settings import *  # noqa: F403

ROOT_URLCONF = "benchsite.urls"
