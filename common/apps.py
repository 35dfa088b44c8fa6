import logging

from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Common HTTP plumbing"

    def ready(self) -> None:
        # Python warnings go through logging too, so LOG_FORMAT=json leaves no plain line on stderr.
        logging.captureWarnings(True)
