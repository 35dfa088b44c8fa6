"""`python manage.py asyncapi`: print the events' AsyncAPI 3.0 document, or write it with --output."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from messaging.asyncapi import build_document, render


class Command(BaseCommand):
    help = "Print the AsyncAPI 3.0 document of the six subjects (the one GET /api/orders/asyncapi.json serves)."

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, help="write it to this file (docs/asyncapi.json) instead")

    def handle(self, *args, output: Path | None, **options):
        text = render(build_document())
        if output is None:
            self.stdout.write(text, ending="")
            return
        output.write_text(text, encoding="utf-8")
        self.stderr.write(f"wrote {output}")
