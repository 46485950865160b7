"""/metrics, /openapi.json, /docs."""

from __future__ import annotations

import pytest

from tests.support.webapp import Api, make_token


async def test_metrics_are_prometheus_text_by_route_template(api: Api) -> None:
    await api.get("/me", token=make_token())
    await api.get("/no/such/thing")
    r = await api.get("/metrics", internal=None)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = (await r.get_data()).decode()
    assert "# TYPE nexus_http_requests_total counter" in text
    assert 'nexus_http_requests_total{method="GET",route="/me",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "nexus_http_request_duration_seconds_bucket" in text


async def test_each_app_has_its_own_registry(api: Api, build_app: object) -> None:
    await api.get("/health")
    other = build_app()  # type: ignore[operator]
    async with other.test_app():
        text = (await (await other.test_client().get("/metrics")).get_data()).decode()
    assert 'route="/health"' not in text


async def test_openapi_document(api: Api) -> None:
    r = await api.get("/openapi.json", internal=None)
    assert r.status_code == 200
    doc = await r.get_json()
    assert doc["info"]["title"] == "Nexus API"
    for path in ("/me", "/health", "/ready", "/internal/stats"):
        assert path in doc["paths"], path
    me = doc["paths"]["/me"]["get"]["responses"]["200"]
    schema = str(me)
    assert "content" in me and "Data" in schema
    assert {"userJwt", "operatorKey"} <= set(doc["components"]["securitySchemes"])
    assert {"401", "403", "503"} <= set(doc["paths"]["/me"]["get"]["responses"])
    assert doc["paths"]["/me"]["get"]["security"] == [{"internal": [], "userJwt": []}]
    assert "401" in doc["paths"]["/internal/stats"]["get"]["responses"]


async def test_docs_page_is_html(api: Api) -> None:
    r = await api.get("/docs", internal=None)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "Nexus API" in (await r.get_data()).decode()


async def test_docs_page_loads_swagger_ui_from_this_server_only(api: Api) -> None:
    body = (await (await api.get("/docs", internal=None)).get_data()).decode()
    assert 'src="/docs/assets/swagger-ui-bundle.js"' in body
    assert 'href="/docs/assets/swagger-ui.css"' in body
    assert "http://" not in body and "https://" not in body  # no CDN


@pytest.mark.parametrize(
    ("name", "content_type", "marker"),
    [
        ("swagger-ui-bundle.js", "text/javascript", "SwaggerUIBundle"),
        ("swagger-ui.css", "text/css", ".swagger-ui"),
    ],
)
async def test_swagger_ui_assets_come_from_the_package(
    api: Api, name: str, content_type: str, marker: str
) -> None:
    r = await api.get(f"/docs/assets/{name}", internal=None)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(content_type)
    assert marker in (await r.get_data()).decode()


@pytest.mark.parametrize("name", ["index.html", "swagger-initializer.js", "swagger-ui.js.map"])
async def test_only_the_two_swagger_ui_assets_are_served(api: Api, name: str) -> None:
    r = await api.get(f"/docs/assets/{name}", internal=None)
    assert r.status_code == 404
    assert (await r.get_json())["error"]["code"] == "E_NOT_FOUND"


async def test_swagger_ui_assets_are_left_out_of_the_openapi_document(api: Api) -> None:
    doc = await (await api.get("/openapi.json", internal=None)).get_json()
    assert not [path for path in doc["paths"] if path.startswith("/docs")]
