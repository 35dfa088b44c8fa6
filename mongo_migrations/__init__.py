"""Django contrib apps' migrations for MongoDB (django-mongodb-backend); see docs/mongodb.md.

Only used when DATABASE_URL is a mongodb:// or mongodb+srv:// URL: settings.py then points
MIGRATION_MODULES for admin, auth and contenttypes here and swaps those apps for the AppConfigs
in `mongo_migrations.apps`, whose primary keys are ObjectIdAutoField. SQLite and PostgreSQL keep
Django's own migrations for these apps.
"""
