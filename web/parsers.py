"""The only request body parser: strict JSON, every failure a 400."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.strict_json import loads_strict


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, but NaN/Infinity and pathologically nested bodies are 400s, not 500s."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            return loads_strict(stream.read().decode(encoding))
        except (ValueError, LookupError) as exc:
            raise ParseError("Malformed JSON body") from exc
