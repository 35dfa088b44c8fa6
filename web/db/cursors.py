"""django-prometheus' metered cursor with its labelled metrics looked up once, not on every query.

django-prometheus' `ExportingCursorWrapper` asks each metric for its (alias, vendor) child on every
`execute`, and builds an exception counter and a timer object: about 30,000 instructions a query, of
which a `POST /api/orders` makes four (docs/profiles/server.md). This class counts the same metrics with
the same labels: `django_db_execute_total`, `django_db_execute_many_total`,
`django_db_query_duration_seconds` and `django_db_errors_total` by exception type.
"""

from __future__ import annotations

from timeit import default_timer

from django_prometheus.db import errors_total, execute_many_total, execute_total, query_duration_seconds


def metered_cursor_class(cursor_class: type, alias: str, vendor: str) -> type:
    """A subclass of `cursor_class` that counts and times its queries as django-prometheus does."""
    executed, executed_many = execute_total.labels(alias, vendor), execute_many_total.labels(alias, vendor)
    duration = query_duration_seconds.labels(alias, vendor)

    class CursorWrapper(cursor_class):
        def execute(self, *args, **kwargs):
            executed.inc()
            return timed(super().execute, args, kwargs)

        def executemany(self, query, param_list, *args, **kwargs):
            executed.inc(len(param_list))
            executed_many.inc(len(param_list))
            return timed(super().executemany, (query, param_list, *args), kwargs)

    def timed(run, args: tuple, kwargs: dict):
        started = default_timer()
        try:
            return run(*args, **kwargs)
        except BaseException as exc:  # as django-prometheus' ExceptionCounterByType counts them
            errors_total.labels(alias=alias, vendor=vendor, type=type(exc).__name__).inc()
            raise
        finally:
            duration.observe(max(default_timer() - started, 0))

    return CursorWrapper
