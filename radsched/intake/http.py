"""``POST /api/orders``: the JSON order webhook (bearer token), same intake as ORM^O01.

``{"order_id", "mrn", "phone", "modality", "procedure", "facility"}`` → ``202 {"status":
"accepted" | "duplicate" | "deferred_to_phone"}`` once the order, its conversation and its first text
are committed. 400 names the offending field (never echoing its value: it may be a phone number or
an MRN), 401 without a known token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channels import OrderRef
from radsched.intake.choice import resolve_modality
from radsched.intake.service import OrderIntake
from radsched.logs import correlation_id
from radsched.privacy import normalise_phone
from radsched.rest.bodies import BadInput, read_json_object
from radsched.rest.errors import error_response
from radsched.storage.db import Database

log = logging.getLogger("radsched.intake.http")

__all__ = ["ORDERS_PATH", "OrderRequest", "add_order_route", "openapi_fragment"]

ORDERS_PATH = "/api/orders"
_MAX_BODY = 16 * 1024


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    order_id: str = Field(min_length=1, max_length=64)
    mrn: str = Field(min_length=1, max_length=64)
    phone: str = Field(min_length=1, max_length=64)
    modality: str = Field(default="", max_length=16)
    procedure: str = Field(default="", max_length=64)
    facility: str = Field(default="", max_length=64)
    language: str = Field(default="", max_length=16)


def _authorised(header: str, tokens: tuple[str, ...]) -> bool:
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        return False
    given = supplied.strip().encode("utf-8", "surrogateescape")  # non-UTF-8 bytes: no match
    # Compare with every token, without stopping at a match: timing says nothing about which.
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode())
    return matched


def _field_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "missing":
        return f"{name}: required"
    if err["type"] == "extra_forbidden":
        return f"{name}: unknown field"
    # pydantic's message can quote the input; say what is wrong without it.
    return f"{name}: {err['msg'].split(',')[0]}"


def add_order_route(
    app: web.Application,
    *,
    db: Database,
    intake: OrderIntake,
    tokens: tuple[str, ...],
    procedure_modalities: Mapping[str, str],
    wake: Callable[[], None],
) -> None:
    async def post_order(request: web.Request) -> web.Response:
        if not _authorised(request.headers.get("Authorization", ""), tokens):
            return error_response(
                401,
                "unauthorized",
                "missing or unknown bearer token",
                **{"WWW-Authenticate": "Bearer"},
            )
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return error_response(413, "too_large", f"body larger than {_MAX_BODY} bytes")
        try:
            raw = await read_json_object(request)
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        try:
            body = OrderRequest.model_validate(raw)
        except ValidationError as exc:
            return error_response(400, "invalid_request", _field_error(exc))
        phone = normalise_phone(body.phone)
        if phone is None:
            return error_response(400, "invalid_request", "phone: not a valid phone number")
        modality = resolve_modality(body.modality, body.procedure, procedure_modalities)
        if modality is None:
            what = (
                "not a DICOM modality code" if body.modality else "required (or a mapped procedure)"
            )
            return error_response(400, "invalid_request", f"modality: {what}")
        order = OrderRef(
            order_id=body.order_id, mrn=body.mrn, procedure_code=body.procedure, modality=modality
        )
        cid = correlation_id.get() or secrets.token_hex(8)  # the request id, set by the app
        async with db.transaction("intake.api_order") as conn:
            decision = await intake.accept(
                conn,
                order,
                phone=phone,
                facility=body.facility,
                source="api",
                correlation_id=cid,
                language=body.language or None,
            )
        intake.count(decision)()
        wake()
        log.info("order received", extra={"source": "api", "status": decision.status})
        return web.json_response({"status": decision.status}, status=202)

    app.router.add_post(ORDERS_PATH, post_order)


def openapi_fragment() -> dict[str, Any]:
    """``/api/orders`` and its security scheme, for ``radsched.rest.openapi.add_paths``."""
    error = {"$ref": "#/components/schemas/Error"}
    paths = {
        ORDERS_PATH: {
            "post": {
                "summary": "Submit an order for SMS self-scheduling",
                "operationId": "postOrder",
                "security": [{"OrderToken": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["order_id", "mrn", "phone"],
                                "properties": {
                                    "order_id": {"type": "string", "minLength": 1, "maxLength": 64},
                                    "mrn": {"type": "string", "minLength": 1, "maxLength": 64},
                                    "phone": {"type": "string", "minLength": 1, "maxLength": 64},
                                    "modality": {"type": "string", "maxLength": 16},
                                    "procedure": {"type": "string", "maxLength": 64},
                                    "facility": {"type": "string", "maxLength": 64},
                                    "language": {
                                        "type": "string",
                                        "maxLength": 16,
                                        "description": "Texts' language when templates exist "
                                        "for it (es, es-US, spa); else the default.",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "Stored; texting started, a duplicate, or handed to staff",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status"],
                                    "properties": {
                                        "status": {
                                            "type": "string",
                                            "enum": ["accepted", "duplicate", "deferred_to_phone"],
                                        }
                                    },
                                }
                            }
                        },
                    },
                    **{
                        code: {
                            "description": text,
                            "content": {"application/json": {"schema": error}},
                        }
                        for code, text in (
                            ("400", "Invalid input (the message names the field)"),
                            ("401", "Missing or unknown bearer token"),
                            ("413", "Body too large"),
                        )
                    },
                },
            }
        }
    }
    scheme = {"type": "http", "scheme": "bearer", "description": "One of ORDER_TOKENS."}
    return {"paths": paths, "components": {"securitySchemes": {"OrderToken": scheme}}}
