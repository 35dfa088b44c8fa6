import os

from web.handlers import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticketing_orders.settings")

application = get_wsgi_application()
