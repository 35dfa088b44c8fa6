"""Static files storage that works with and without `collectstatic`."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class ManifestIfCollectedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """whitenoise's manifest storage when collectstatic has written its manifest, plain names otherwise.

    Without a manifest, the manifest storage looks for the file in STATIC_ROOT to hash it and
    raises ValueError when it is not there: every page with a `{% static %}` tag (Swagger UI, the
    admin) was a 500 on a service started with `migrate` and gunicorn alone. whitenoise serves the
    plain names from the apps' static folders (WHITENOISE_USE_FINDERS).
    """

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:  # no manifest: collectstatic has not run
            return name
        try:
            return super().stored_name(name)
        except ValueError:  # a file collectstatic did not see (e.g. an app added since)
            return name
