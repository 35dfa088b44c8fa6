"""The benchmarks' Django side: the service's own settings plus a bare route, seeding and drivers."""
