"""`/receiveSMS`: the MobileFirst-compatible endpoint, turned into one `InboundSMS`.

Parameters come from the query string, a form body or a JSON object body (body wins over query).
`from` and `text` are required, `to` and `keyword` optional, and every other parameter is kept,
as a string, in `params`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web
from multidict import MultiMapping

from twoway.messages import InboundSMS
from twoway.phone import InvalidPhoneNumber, normalise_phone
from twoway_ingress.errors import InvalidRequest, refusing_malformed_bodies

NAMED_FIELDS = frozenset({"from", "to", "text", "keyword"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _first_values(fields: MultiMapping[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in fields.items():
        values.setdefault(key, value)
    return values


def _json_fields(body: bytes) -> dict[str, str]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest(400, "invalid_json", f"the body is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise InvalidRequest(400, "invalid_json", "the JSON body must be an object")
    fields: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(value, str):
            fields[key] = value
        elif isinstance(value, bool):
            fields[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            fields[key] = str(value)
        elif value is None:
            continue
        else:
            raise InvalidRequest(
                422, "invalid_field", f"{key} must be a string, a number or a boolean", key
            )
    return fields


async def request_fields(request: web.Request) -> dict[str, str]:
    """Every parameter of a gateway's post: query string, then the body's fields over it."""
    fields = _first_values(request.query)
    if request.method != "POST" or not request.body_exists:
        return fields
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        # Refused before reading; a chunked body meets the same limit while it is read.
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    content_type = request.content_type
    if content_type in FORM_TYPES:
        with refusing_malformed_bodies():
            form = await request.post()
        fields.update({key: value for key, value in form.items() if isinstance(value, str)})
    elif content_type == "application/json" or content_type.endswith("+json"):
        fields.update(_json_fields(await request.read()))
    else:
        raise InvalidRequest(
            415,
            "unsupported_media_type",
            "post a form (application/x-www-form-urlencoded) or a JSON object",
        )
    return fields


def inbound_from_fields(
    fields: Mapping[str, str], gateway_id: str, default_region: str
) -> InboundSMS:
    """The `InboundSMS` a `/receiveSMS` post describes; `InvalidRequest` naming a bad field."""
    sender = fields.get("from", "").strip()
    if not sender:
        raise InvalidRequest(422, "missing_field", "from is required: the sender's number", "from")
    if "text" not in fields:
        raise InvalidRequest(422, "missing_field", "text is required: the message text", "text")
    try:
        sender = normalise_phone(sender, default_region)
    except InvalidPhoneNumber as error:
        raise InvalidRequest(422, "invalid_field", f"from: {error}", "from") from error
    return InboundSMS(
        gateway_id=gateway_id,
        sender=sender,
        recipient=fields.get("to", "").strip(),
        text=fields["text"],
        keyword=fields.get("keyword", ""),
        params={key: value for key, value in fields.items() if key not in NAMED_FIELDS},
    )
