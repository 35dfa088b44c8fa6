from django.urls import re_path

from orders.apis import OrderDetailApi, OrderListCreateApi

# Express matched these with or without a trailing slash; so do we.
urlpatterns = [
    re_path(r"^api/orders/?$", OrderListCreateApi.as_view(), name="orders"),
    re_path(r"^api/orders/(?P<order_id>[^/]+)/?$", OrderDetailApi.as_view(), name="order-detail"),
]
