"""`/docs` without the internet: Swagger UI's script and stylesheet served from a package.

quart-schema renders the `/docs` page and loads Swagger UI from the URLs in two config
keys, a CDN by default; a machine without internet then shows a blank page. `install`
points those keys at `/docs/assets/<file>`, answered from the files the
`swagger-ui-bundle-v2` wheel ships (only the two the page uses; anything else is 404).
The assets are public like the page and hidden from the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from quart import Quart, Response, abort, send_file
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path

ASSET_ENDPOINT = "swagger_ui_asset"
ASSETS_PREFIX = "/docs/assets"
_JS = "swagger-ui-bundle.js"
_CSS = "swagger-ui.css"
_FILES = {_JS: "text/javascript", _CSS: "text/css"}
# The files change only with the package version: let browsers keep them a day.
_MAX_AGE_SECONDS = 86400


def configure(app: Quart) -> None:
    """Point quart-schema's Swagger UI page at our assets (call before QuartSchema(app))."""
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = f"{ASSETS_PREFIX}/{_JS}"
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = f"{ASSETS_PREFIX}/{_CSS}"
    app.add_url_rule(f"{ASSETS_PREFIX}/<name>", ASSET_ENDPOINT, _asset, methods=["GET"])


@hide
async def _asset(name: str) -> Response:
    mimetype = _FILES.get(name)
    if mimetype is None:
        abort(404)
    path = Path(str(swagger_ui_path)) / name
    response = await send_file(path, mimetype=mimetype)
    response.cache_control.public = True
    response.cache_control.max_age = _MAX_AGE_SECONDS
    return response
