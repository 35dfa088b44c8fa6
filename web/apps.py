import logging

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "web"
    verbose_name = "HTTP plumbing"

    def ready(self) -> None:
        # Python warnings go through logging too, so LOG_FORMAT=json leaves no plain line on stderr.
        logging.captureWarnings(True)
