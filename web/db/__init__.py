"""Database backends: Django's, with django-prometheus' query metrics."""
