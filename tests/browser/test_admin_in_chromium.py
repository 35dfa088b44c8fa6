"""The admin in a real browser: Debian's Chromium driven by Playwright, as an operator would use it."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest
from django.utils import timezone

from messaging.models import FailedEvent, OutboxEvent
from messaging.order_status import OrderStatus
from orders.models import Order
from tickets_replica.models import Ticket

# Chromium from the distribution (make test installs it), never a browser build Playwright downloads.
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# The probe flags: headless, and no background connections this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "operator-password-1"
TICKET_ID = "65f0c0ffee0000000000abcd"

# Playwright's sync API keeps an event loop on this thread, which Django's async-safety check takes
# for an async context; the ORM calls here are plain synchronous test set-up and checks.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def browser_page(live_server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(15_000)
        try:
            yield page
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(username="operator", email="op@example.com", password=PASSWORD)


@pytest.fixture
def orders(transactional_db):
    def order(title: str, status: str, user: str) -> Order:
        ticket = Ticket.objects.create(id=f"{len(title):02x}" + os.urandom(11).hex(), title=title, price=20, version=0)
        return Order.objects.create(
            user_id=user, ticket=ticket, status=status, expires_at=timezone.now() + dt.timedelta(minutes=15)
        )

    return {
        # User ids as the auth service makes them: 24-hex, which never wrap.
        "alice_created": order("concert", OrderStatus.CREATED, "65f0c0ffee00000000000001"),
        "bob_created": order("opera", OrderStatus.CREATED, "65f0c0ffee00000000000002"),
        "awaiting": order("ballet", OrderStatus.AWAITING_PAYMENT, "65f0c0ffee00000000000002"),
        "complete": order("football final", OrderStatus.COMPLETE, "65f0c0ffee00000000000003"),
        "cancelled": order("theatre", OrderStatus.CANCELLED, "65f0c0ffee00000000000003"),
    }


def sign_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/api/orders/admin/")
    assert "/api/orders/admin/login/" in page.url
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("text=Site administration")


def test_an_operator_signs_in_filters_cancels_and_retries(browser_page, live_server, operator, orders):
    page = browser_page
    failed = FailedEvent.objects.create(
        subject="ticket:created",
        stream="ticketing",
        stream_sequence=42,
        payload=json.dumps({"id": TICKET_ID, "version": 0, "title": "late show", "price": 15, "userId": "u1"}),
        error="OperationalError: database is locked (after 10 deliveries)",
        delivery_count=10,
    )

    sign_in(page, live_server)

    # The order list: everything an operator looks for is visible at 1280 px, without scrolling.
    page.click("a[href='/api/orders/admin/orders/order/']")
    page.wait_for_selector("#result_list")
    assert page.inner_text("h1") == "Select order to view"
    if os.environ.get("ADMIN_SCREENSHOT"):  # a PNG of the order list, to look at
        page.screenshot(path=os.environ["ADMIN_SCREENSHOT"], full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The table's own box scrolls sideways when it is too wide: every column must fit inside it.
    assert page.evaluate("(el => el.scrollWidth <= el.clientWidth)(document.querySelector('.results'))")
    visible = page.locator(".results").bounding_box()
    for column in ("column-id", "column-user_id", "column-status", "column-expires_at", "column-created_at"):
        box = page.locator(f"#result_list th.{column}").bounding_box()
        assert box["x"] + box["width"] <= visible["x"] + visible["width"], column
    assert page.locator("#result_list th.column-version").is_visible()

    # Filter by status: only the created orders stay.
    page.click("#changelist-filter a:has-text('Created')")
    page.wait_for_url(re.compile(r"status__exact=created"))
    shown = set(page.locator("#result_list tbody th.field-id a").all_inner_texts())
    assert shown == {orders["alice_created"].id, orders["bob_created"].id}

    # Cancel one through the action.
    target = orders["alice_created"]
    page.check(f"input[name=_selected_action][value='{target.id}']")
    page.select_option("select[name=action]", "cancel_orders")
    with page.expect_navigation():
        page.click("button[name=index]")
    assert "Cancelled 1 order(s)." in page.inner_text(".messagelist")
    target.refresh_from_db()
    assert (target.status, target.version) == (OrderStatus.CANCELLED, 1)
    assert OutboxEvent.objects.filter(subject="order:cancelled", payload__id=target.id).count() == 1
    assert Order.objects.get(id=orders["bob_created"].id).status == OrderStatus.CREATED

    # A failed event: read-only page, whole error, and Retry applies it.
    page.goto(f"{live_server.url}/api/orders/admin/messaging/failedevent/")
    assert failed.error in page.inner_text("#result_list")
    page.click(f"#result_list a[href$='/{failed.pk}/change/']")
    page.wait_for_selector("h1:has-text('View failed event')")
    assert page.locator("input[name=_save]").count() == 0
    with page.expect_navigation():
        page.click("input[name=_retry]")
    assert page.url.endswith(f"/messaging/failedevent/{failed.pk}/change/")
    assert "Ticket:created #42: applied" in page.inner_text(".messagelist")
    failed.refresh_from_db()
    assert failed.resolved_at is not None
    assert Ticket.objects.get(id=TICKET_ID).title == "late show"
