"""The benchmarks' Django side: the service's own settings plus a bare route, seeding and drivers."""


def object_id(prefix: str, n: int) -> str:
    """A 24-hex id unique per (prefix, n): prefix is 1-4 hex digits naming what the id is for."""
    return f"{prefix}{n:0{24 - len(prefix)}x}"
