"""The OpenAPI document and the Swagger UI: public, valid, and served with their own static assets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from drf_spectacular.validation import validate_schema

BASE_DIR = Path(settings.BASE_DIR)
SCHEMA_URL = "/api/orders/schema/"
DOCS_URL = "/api/orders/docs/"

# What a browser or API client may carry that must not get in the way of the public routes.
COOKIES = {
    "none": {},
    "garbage session": {"HTTP_COOKIE": "session=%%%not-base64; express:sess=e30; sessionid=junk; csrftoken=x"},
    "garbage bearer": {"HTTP_AUTHORIZATION": "Bearer not.a.token"},
}


@pytest.fixture(params=list(COOKIES), ids=list(COOKIES))
def visitor(request, client):
    """The Django test client, sending the given cookie or header with every request."""
    extra = COOKIES[request.param]

    class Visitor:
        def get(self, path, data=None):
            return client.get(path, data, **extra)

    return Visitor()


@pytest.fixture
def schema(client) -> dict:
    response = client.get(SCHEMA_URL)
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_the_schema_is_public_yaml_openapi_3(visitor):
    response = visitor.get(SCHEMA_URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    document = yaml.safe_load(response.content)
    assert str(document["openapi"]).startswith("3")
    assert document["info"]["title"] == "Ticketing orders service"


def test_the_schema_is_also_served_as_json(visitor):
    response = visitor.get(SCHEMA_URL, {"format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert json.loads(response.content)["openapi"].startswith("3")


def test_the_schema_validates_against_the_openapi_3_specification(schema):
    validate_schema(schema)  # raises jsonschema.ValidationError if not


def test_the_schema_documents_the_express_paths_without_trailing_slashes(schema):
    assert set(schema["paths"]) == {"/api/orders", "/api/orders/{order_id}"}
    assert set(schema["paths"]["/api/orders"]) == {"get", "post"}
    assert set(schema["paths"]["/api/orders/{order_id}"]) == {"get", "delete"}
    operations = {
        (path, method): operation["operationId"]
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }
    assert operations == {
        ("/api/orders", "get"): "orders_list",
        ("/api/orders", "post"): "orders_create",
        ("/api/orders/{order_id}", "get"): "orders_retrieve",
        ("/api/orders/{order_id}", "delete"): "orders_cancel",
    }


def test_the_operations_document_their_bodies_and_errors(schema):
    orders, order = schema["paths"]["/api/orders"], schema["paths"]["/api/orders/{order_id}"]

    def ref(response: dict) -> str:
        return (
            response["content"]["application/json"]["schema"].get("$ref")
            or response["content"]["application/json"]["schema"]["items"]["$ref"]
        )

    assert ref(orders["get"]["responses"]["200"]) == "#/components/schemas/Order"
    assert orders["get"]["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert ref(orders["post"]["responses"]["201"]) == "#/components/schemas/Order"
    assert orders["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderCreateRequest"
    }
    # Besides each view's own answers: 405, 406 and 503 on every operation, 413 and 415 with a body.
    assert set(orders["get"]["responses"]) == {"200", "400", "401", "405", "406", "503"}  # 400: a bad limit or after
    # 409 and 422: the Idempotency-Key's refusals.
    assert set(orders["post"]["responses"]) == {
        "201", "400", "401", "404", "405", "406", "409", "413", "415", "422", "503"
    }  # fmt: skip
    assert ref(order["get"]["responses"]["200"]) == "#/components/schemas/Order"
    assert set(order["get"]["responses"]) == {"200", "401", "404", "405", "406", "503"}
    assert set(order["delete"]["responses"]) == {"204", "400", "401", "404", "405", "406", "503"}
    for operation in (orders["get"], orders["post"], order["get"], order["delete"]):
        for code, response in operation["responses"].items():
            if code.startswith("4"):
                assert ref(response) == "#/components/schemas/Errors"
    for operation in (order["get"], order["delete"]):
        assert [(p["name"], p["in"], p["required"]) for p in operation["parameters"]] == [("order_id", "path", True)]


def test_the_create_documents_the_idempotency_key_header(schema):
    post = schema["paths"]["/api/orders"]["post"]

    [key] = [p for p in post["parameters"] if p["name"] == "Idempotency-Key"]
    assert (key["in"], key.get("required", False)) == ("header", False)
    assert {k: key["schema"][k] for k in ("type", "minLength", "maxLength")} == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
    }
    assert "Idempotent-Replayed: true" in post["responses"]["201"]["description"]


def test_the_order_schema_has_the_contract_fields(schema):
    components = schema["components"]["schemas"]

    assert list(components["Order"]["properties"]) == ["id", "userId", "status", "expiresAt", "ticket", "version"]
    assert components["Order"]["properties"]["ticket"] == {"$ref": "#/components/schemas/Ticket"}
    assert list(components["Ticket"]["properties"]) == ["id", "title", "price", "version"]
    assert components["Ticket"]["properties"]["price"]["type"] == "number"
    assert set(components["StatusEnum"]["enum"]) == {"created", "cancelled", "awaiting:payment", "complete"}
    assert list(components["OrderCreateRequest"]["properties"]) == ["ticketId"]
    assert components["Errors"]["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/Error"}
    assert list(components["Error"]["properties"]) == ["message", "field"]


def test_bearer_is_the_only_security_scheme_and_the_cookie_is_described(schema):
    """Swagger UI can send a Bearer header; a page cannot set a Cookie header, so no cookie scheme is offered."""
    schemes = schema["components"]["securitySchemes"]

    assert list(schemes) == ["bearerAuth"]
    assert {k: v for k, v in schemes["bearerAuth"].items() if k != "description"} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert "mint_token --bearer" in schemes["bearerAuth"]["description"]
    for item in schema["paths"].values():
        for operation in item.values():
            assert operation["security"] == [{"bearerAuth": []}]
    description = schema["info"]["description"]
    for words in ("`session` cookie", "express:sess", "Authorization: Bearer", "mint_token --bearer", "Authorize"):
        assert words in description, words


def test_the_ticket_id_is_documented_as_24_hex(schema):
    ticket_id = schema["components"]["schemas"]["OrderCreateRequest"]["properties"]["ticketId"]

    assert ticket_id["type"] == "string"
    assert ticket_id["pattern"] == "^[0-9a-fA-F]{24}$"


@pytest.mark.parametrize("component", ["Order", "Ticket"])
def test_versions_are_integers_a_javascript_number_holds(schema, component):
    version = schema["components"]["schemas"][component]["properties"]["version"]

    assert {k: version[k] for k in ("type", "minimum", "maximum")} == {
        "type": "integer",
        "minimum": 0,
        "maximum": 2**53 - 1,
    }


def test_spectacular_validates_the_schema_without_warnings(tmp_path, production_env):
    """`manage.py spectacular --validate --fail-on-warn`, as CI or a developer would run it."""
    output = tmp_path / "schema.yaml"

    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(output)],
        cwd=BASE_DIR,
        env=production_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr
    assert set(yaml.safe_load(output.read_text())["paths"]) == {"/api/orders", "/api/orders/{order_id}"}


# --- Swagger UI ---------------------------------------------------------------------------------


def asset_urls(html: str) -> list[str]:
    return re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"', html)


def test_the_docs_page_is_swagger_ui_pointing_at_the_schema(visitor):
    response = visitor.get(DOCS_URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "SwaggerUIBundle(" in html
    assert f'url: "{SCHEMA_URL}"' in html


def test_the_docs_assets_come_from_the_sidecar_under_the_static_prefix(visitor):
    html = visitor.get(DOCS_URL).content.decode()

    urls = asset_urls(html)

    # Only local assets: the page must work without a CDN.
    assert urls, html
    assert all(url.startswith("/api/orders/static/drf_spectacular_sidecar/swagger-ui-dist/") for url in urls), urls
    names = {url.rsplit("/", 1)[1] for url in urls}
    assert {"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"} <= names


def test_the_docs_assets_are_served(client, settings, tmp_path):
    # An empty STATIC_ROOT, as in a fresh clone where collectstatic has not run: whitenoise must
    # find the sidecar's files through the finders (WHITENOISE_USE_FINDERS).
    settings.STATIC_ROOT = tmp_path / "static-root"
    urls = asset_urls(client.get(DOCS_URL).content.decode())
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}

    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert len(body) > 100, url
        assert response["Content-Type"].startswith(expected_types[Path(url).suffix]), (url, response["Content-Type"])


def test_an_unknown_static_file_is_a_404(client):
    response = client.get("/api/orders/static/drf_spectacular_sidecar/swagger-ui-dist/no-such-file.js")

    assert response.status_code == 404


# --- without collectstatic: the contract starts the service with migrate, then gunicorn --------------


@pytest.fixture
def production_storage_without_manifest(settings, tmp_path):
    """The production STORAGES (ticketing_orders.settings, not the test settings) and an empty STATIC_ROOT."""
    from ticketing_orders import settings as production_settings

    settings.STORAGES = production_settings.STORAGES
    settings.STATIC_ROOT = tmp_path / "static-root"
    settings.DEBUG = False
    assert not (settings.STATIC_ROOT / "staticfiles.json").exists()


def test_the_docs_page_renders_without_collectstatic(client, production_storage_without_manifest):
    response = client.get(DOCS_URL)

    assert response.status_code == 200, response.content[:500]
    urls = asset_urls(response.content.decode())
    assert "/api/orders/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css" in urls
    for url in urls:
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_the_admin_login_renders_without_collectstatic(client, production_storage_without_manifest):
    response = client.get("/api/orders/admin/login/")

    assert response.status_code == 200, response.content[:500]
    assert "/api/orders/static/admin/css/base.css" in response.content.decode()


@pytest.mark.django_db
def test_after_collectstatic_the_pages_use_the_hashed_names(client, settings, tmp_path):
    from django.core.management import call_command

    from ticketing_orders import settings as production_settings

    settings.STORAGES = production_settings.STORAGES
    settings.STATIC_ROOT = tmp_path / "static-root"
    settings.DEBUG = False
    call_command("collectstatic", "--noinput", verbosity=0)
    settings.STATIC_ROOT = settings.STATIC_ROOT  # a fresh storage, which reads the new manifest

    docs = client.get(DOCS_URL).content.decode()
    login = client.get("/api/orders/admin/login/").content.decode()

    assert re.search(r"/swagger-ui-dist/swagger-ui\.[0-9a-f]{12}\.css", docs), docs
    assert re.search(r"/admin/css/base\.[0-9a-f]{12}\.css", login), login
