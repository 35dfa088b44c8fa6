"""AppConfigs for the contrib apps whose models have an AutoField primary key.

MongoDB has no AutoField: django-mongodb-backend requires ObjectIdAutoField, and DEFAULT_AUTO_FIELD
does not reach apps whose AppConfig sets `default_auto_field` (admin, auth and contenttypes do),
so these subclasses set it. settings.py installs them only when DATABASE_URL selects MongoDB.
"""

from django.contrib.admin.apps import AdminConfig
from django.contrib.auth.apps import AuthConfig
from django.contrib.contenttypes.apps import ContentTypesConfig

OBJECT_ID_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"


class MongoAdminConfig(AdminConfig):
    default_auto_field = OBJECT_ID_AUTO_FIELD


class MongoAuthConfig(AuthConfig):
    default_auto_field = OBJECT_ID_AUTO_FIELD


class MongoContentTypesConfig(ContentTypesConfig):
    default_auto_field = OBJECT_ID_AUTO_FIELD
