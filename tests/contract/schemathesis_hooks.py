"""Schemathesis hooks for `tests/contract/test_schemathesis.py` (loaded by the `st` process
through SCHEMATHESIS_HOOKS).

- `error_code_is_declared`: an error answer's `error.code` must be one the document lists
  for that operation and status (`x-nexus-error-codes`, see web/openapi.py), so the lists
  a client is generated from are checked against what the API really answers.
- Pre-signed routes get a valid token for the generated media id (their only credential),
  so they are exercised past the signature check, like every other route with valid
  credentials. The key comes from NEXUS_TEST_SIGNING_KEY_HEX.
- Every answer's operation id and status is appended to NEXUS_TEST_ST_STATUS_LOG, so the
  test can tell that each operation got past its credential checks.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import schemathesis

from nexus.errors import Forbidden
from nexus.uploads import signing

_PRESIGNED = {"put_upload": "upload", "download": "download"}


@schemathesis.check
def error_code_is_declared(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400:
        return None
    declared = (
        case.operation.definition.raw.get("responses", {})
        .get(str(response.status_code), {})
        .get("x-nexus-error-codes")
    )
    if declared is None:  # an undocumented status: status_code_conformance reports it
        return None
    try:
        code = response.json()["error"]["code"]
    except Exception as exc:
        raise AssertionError(f"error body is not the envelope: {response.text[:200]}") from exc
    if code not in declared:
        raise AssertionError(
            f"{case.operation.label} answered {response.status_code} {code}, "
            f"which its document does not list ({declared})"
        )
    return True


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    action = _PRESIGNED.get(case.operation.definition.raw.get("operationId", ""))
    if action is None:
        return
    try:
        media_id = uuid.UUID(str((case.path_parameters or {}).get("media_id")))
    except ValueError:
        return
    key = bytes.fromhex(os.environ["NEXUS_TEST_SIGNING_KEY_HEX"])
    query = dict(case.query or {})
    try:
        signing.verify(key, query.get("token"), action, media_id)  # type: ignore[arg-type]
    except Forbidden:
        query["token"] = signing.sign(key, action, media_id, ttl_seconds=600).token  # type: ignore[arg-type]
        case.query = query


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    operation = case.operation.definition.raw.get("operationId", "?")
    with open(os.environ["NEXUS_TEST_ST_STATUS_LOG"], "a") as log:
        log.write(f"{operation} {response.status_code}\n")
