"""`validate_querystring` for every list route: quart-schema's decorator (same OpenAPI
parameters, same `QuerystringValidationError`, so the same 400 envelope) with the model's
validator built once at import instead of a new pydantic `TypeAdapter` per request.

The app does not convert casing (`QUART_SCHEMA_CONVERT_CASING` is off), so the arguments
are validated as sent, as quart-schema does in that configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from quart import request
from quart_schema.validation import QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, QuerystringValidationError

View = Callable[..., Awaitable[Any]]


def validate_querystring(model_class: type[BaseModel]) -> Callable[[View], View]:
    adapter = TypeAdapter(model_class)

    def decorator(func: View) -> View:
        setattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, model_class)

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            # quart-schema's reading of the query string: `key[]` and repeated keys are
            # lists, anything else the one value.
            arguments: dict[str, Any] = {}
            query = request.args
            for key in query:
                values = query.getlist(key)
                if key.endswith("[]"):
                    arguments[key.removesuffix("[]")] = values
                else:
                    arguments[key] = values if len(values) > 1 else values[0]
            try:
                model = adapter.validate_python(arguments)
            except (TypeError, ValidationError, ValueError) as error:
                raise QuerystringValidationError(error) from error
            return await func(*args, query_args=model, **kwargs)

        return wrapper

    return decorator
