"""The api's operations, declared once: each one is both an aiohttp route and an OpenAPI
operation, so the document served at /openapi.json cannot drift from the routes.

An `Operation` names its method, path, handler, request body and query models and its responses
(pydantic models); `add_operations` registers the routes (behind the bearer-token check unless
`public`), and `openapi_document` builds the OpenAPI 3.1 document from the same list, with the
JSON schemas pydantic generates for the models.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from twoway.http_errors import InvalidRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
M = TypeVar("M", bound=BaseModel)

_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


class ErrorBody(BaseModel):
    """Every error the api answers."""

    error: str
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Response:
    description: str
    model: type[BaseModel] | None = None


@dataclass(frozen=True)
class PathParameter:
    description: str
    pattern: str | None = None
    """A regular expression (anchored) every value matches."""
    enum: tuple[str, ...] = ()
    """The only values, when there are few."""
    routed: bool = False
    """The route itself matches only values of `pattern` (others are 404), so that a fixed
    segment beside it (`.../subscriptions/count` beside `.../subscriptions/{phone}`) is never
    taken for a value: a wrong method on it then answers 405 with its own `Allow`."""

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.enum:
            schema["enum"] = list(self.enum)
        return schema


@dataclass(frozen=True)
class HeaderParameter:
    name: str
    description: str
    max_length: int
    required: bool = True


@dataclass(frozen=True)
class Operation:
    method: Method
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Response]
    body: type[BaseModel] | None = None
    body_required: bool = True
    """False: the body may be left out (the handler then uses the model's defaults)."""
    query: type[BaseModel] | None = None
    headers: tuple[HeaderParameter, ...] = ()
    """Request headers the operation reads (beyond `Authorization`)."""
    public: bool = False
    """Served without the bearer token (only the OpenAPI document)."""

    @property
    def path_parameters(self) -> list[str]:
        return _PATH_PARAMETER.findall(self.path)


def json_model_response(model: BaseModel, status: int = 200, **kwargs: Any) -> web.Response:
    return web.Response(
        text=model.model_dump_json(by_alias=True),
        status=status,
        content_type="application/json",
        **kwargs,
    )


def _first_error(error: ValidationError) -> InvalidRequest:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or None
    message = f"{location}: {first['msg']}" if location else first["msg"]
    return InvalidRequest(422, "invalid_field", message, location)


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as `model`; 415, 400 or 422 (naming the field) otherwise."""
    if request.content_type != "application/json":
        raise InvalidRequest(415, "unsupported_media_type", "send a JSON object (application/json)")
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise InvalidRequest(400, "invalid_json", "the body is not valid JSON") from error
        if any(item["type"] == "model_type" for item in error.errors()):
            raise InvalidRequest(400, "invalid_json", "the body must be a JSON object") from error
        raise _first_error(error) from error


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; 422 naming the parameter otherwise."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        raise _first_error(error) from error


def require_token(handler: Handler, token: str) -> Handler:
    """`handler` behind `Authorization: Bearer <token>`: 401 without a token, 403 with another."""
    expected = token.encode()

    async def authenticated(request: web.Request) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise web.HTTPUnauthorized(
                reason="send Authorization: Bearer <token> (TWOWAY_API_TOKEN)",
                headers={"WWW-Authenticate": 'Bearer realm="twoway"'},
            )
        # A header's bytes that are not UTF-8 arrive surrogate-escaped: encode them back.
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), expected):
            raise web.HTTPForbidden(reason="the bearer token is not the api's token")
        return await handler(request)

    return authenticated


def _route_path(path: str, parameters: Mapping[str, PathParameter]) -> str:
    """`path` with each routed parameter's pattern in it (aiohttp's `{name:regex}`)."""

    def placeholder(match: re.Match[str]) -> str:
        parameter = parameters.get(match.group(1))
        if parameter is None or not parameter.routed or parameter.pattern is None:
            return match.group(0)
        return f"{{{match.group(1)}:{parameter.pattern.removeprefix('^').removesuffix('$')}}}"

    return _PATH_PARAMETER.sub(placeholder, path)


def add_operations(
    app: web.Application,
    operations: Sequence[Operation],
    token: str,
    path_parameters: Mapping[str, PathParameter],
) -> None:
    for operation in operations:
        handler = operation.handler if operation.public else require_token(operation.handler, token)
        app.router.add_route(
            operation.method, _route_path(operation.path, path_parameters), handler
        )


_AUTH_RESPONSES = {
    401: Response("No bearer token", ErrorBody),
    403: Response("Not the api's token", ErrorBody),
}


def _schemas(operations: Sequence[Operation]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for operation in operations:
        if operation.body is not None:
            models.append((operation.body, "validation"))
        models += [
            (response.model, "serialization")
            for response in operation.responses.values()
            if response.model is not None
        ]
    _, definitions = models_json_schema(
        list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    return schemas


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": spec.get("description", ""),
            "schema": {key: value for key, value in spec.items() if key != "description"},
        }
        for name, spec in schema["properties"].items()
    ]


def _header_parameters(headers: Sequence[HeaderParameter]) -> list[dict[str, Any]]:
    return [
        {
            "name": header.name,
            "in": "header",
            "required": header.required,
            "description": header.description,
            "schema": {"type": "string", "minLength": 1, "maxLength": header.max_length},
        }
        for header in headers
    ]


def _method_not_allowed(allowed: str) -> dict[str, Any]:
    """The 405 any other method on the path answers, with its exact `Allow` header."""
    return {
        "description": f"Another method than {allowed} on this path",
        "headers": {
            "Allow": {
                "description": "The path's methods",
                "schema": {"type": "string", "const": allowed},
            }
        },
        "content": {"application/json": {"schema": _ref(ErrorBody)}},
    }


def _operation_object(
    operation: Operation, parameters: Mapping[str, PathParameter], allowed: str
) -> dict[str, Any]:
    responses = dict(operation.responses)
    if not operation.public:
        responses.update(_AUTH_RESPONSES)
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "parameters": [
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": parameters[name].description,
                "schema": parameters[name].schema(),
            }
            for name in operation.path_parameters
        ]
        + (_query_parameters(operation.query) if operation.query else [])
        + _header_parameters(operation.headers),
        "responses": {
            **{
                str(status): {
                    "description": response.description,
                    **(
                        {"content": {"application/json": {"schema": _ref(response.model)}}}
                        if response.model is not None
                        else {}
                    ),
                }
                for status, response in sorted(responses.items())
            },
            "405": _method_not_allowed(allowed),
        },
    }
    if operation.body is not None:
        document["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": _ref(operation.body)}},
        }
    document["security"] = [] if operation.public else [{"bearer": []}]
    return document


def openapi_document(
    operations: Sequence[Operation],
    *,
    title: str,
    version: str,
    description: str,
    path_parameters: Mapping[str, PathParameter],
) -> dict[str, Any]:
    """The OpenAPI document of `operations`; `path_parameters` describes each `{name}`."""
    methods: dict[str, set[str]] = {}
    for operation in operations:
        methods.setdefault(operation.path, set()).add(operation.method)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        # aiohttp's Allow: the path's methods, sorted, comma-separated
        allowed = ",".join(sorted(methods[operation.path]))
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation_object(
            operation, path_parameters, allowed
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": _schemas(operations),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
