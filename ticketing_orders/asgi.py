import os

from web.handlers import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticketing_orders.settings")

application = get_asgi_application()
