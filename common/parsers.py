"""The only request body parser: strict JSON, every failure a 400."""

from __future__ import annotations

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, but NaN/Infinity and pathologically nested bodies are 400s, not 500s."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            return json.loads(stream.read().decode(encoding), parse_constant=_reject_constant)
        except (ValueError, RecursionError, LookupError) as exc:
            raise ParseError("Malformed JSON body") from exc
