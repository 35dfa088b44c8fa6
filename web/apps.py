import logging

from django.apps import AppConfig

from core.tracing import configure_tracing


class WebConfig(AppConfig):
    name = "web"
    verbose_name = "HTTP plumbing"

    def ready(self) -> None:
        # Python warnings go through logging too, so LOG_FORMAT=json leaves no plain line on stderr.
        logging.captureWarnings(True)
        # Every process of the service (the API's workers, run_listeners, the commands) reads OTEL_*
        # once here: with no exporter asked for, no SDK is installed and tracing costs nothing.
        configure_tracing()
