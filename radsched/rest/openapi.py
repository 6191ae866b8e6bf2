"""The OpenAPI 3.1 document served at ``/api/openapi.json``: the contract the tests check responses against.

Built here as a plain dict. Other components add their own paths before the daemon starts serving::

    from radsched.rest import openapi

    openapi.add_paths(daemon.app, {
        "paths": {"/api/orders": {"post": {...}}},
        "components": {"schemas": {"Order": {...}}, "securitySchemes": {...}},
    })

``add_paths(app, fragment)`` merges ``fragment["paths"]`` and every ``fragment["components"][kind]`` table into
the app's document; a path (method) or component name that already exists is refused with ``ValueError``, so
two components cannot silently overwrite each other. Shared schemas (``Error``) can be referenced as
``{"$ref": "#/components/schemas/Error"}`` and shared responses as ``#/components/responses/<status>`` (e.g.
``BadRequest``, ``Unauthorized``). ``document(app)`` returns the current document.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from aiohttp import web

from radsched import __version__
from radsched.rest.bodies import MAX_DEPTH

OPENAPI_PATH = "/api/openapi.json"
DOCUMENT = web.AppKey("openapi_document", dict)


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_MODALITY = {
    "type": "string",
    "pattern": "^[A-Za-z0-9]{1,16}$",
    "description": "DICOM modality code (CR, DX, CT, MR, US, ...); case-insensitive.",
    "examples": ["CT"],
}
_IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": 64}
_START = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$",
    "description": "ISO 8601 with the site's UTC offset (TIMEZONE).",
}


def _timed(description: str) -> dict[str, Any]:
    """Slots and booked appointments share one shape."""
    return {
        "type": "object",
        "description": description,
        "required": ["id", "location", "modality", "start", "duration_minutes"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "location": {"type": "string"},
            "modality": {"type": "string"},
            "start": _START,
            "duration_minutes": {"type": "integer", "minimum": 1},
        },
    }


_RIS_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "502": {"$ref": "#/components/responses/RisError"},
    "503": {"$ref": "#/components/responses/RisUnavailable"},
    "504": {"$ref": "#/components/responses/RisTimeout"},
}


def _base() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "radsched",
            "version": __version__,
            "description": "REST facade of the radsched HL7 gateway (DESIGN.md section 6). Every error "
            'is `{"error": {"code": ..., "message": ...}}`.',
        },
        "paths": {
            "/api/ris/locations": {
                "get": {
                    "operationId": "listLocations",
                    "summary": "Locations offering a modality (cached for LOCATION_CACHE_S).",
                    "security": [{"ApiKey": []}],
                    "parameters": [
                        {"name": "modality", "in": "query", "required": True, "schema": _MODALITY}
                    ],
                    "responses": {
                        "200": _json("Locations offering the modality.", "LocationList"),
                        **_RIS_ERRORS,
                    },
                }
            },
            "/api/ris/available-slots": {
                "get": {
                    "operationId": "listAvailableSlots",
                    "summary": "Open slots at a location for a modality, from a local date for N days.",
                    "security": [{"ApiKey": []}],
                    "parameters": [
                        {
                            "name": "location",
                            "in": "query",
                            "required": True,
                            "schema": _IDENTIFIER,
                        },
                        {"name": "modality", "in": "query", "required": True, "schema": _MODALITY},
                        {
                            "name": "date",
                            "in": "query",
                            "required": True,
                            "description": "First local day (TIMEZONE), YYYY-MM-DD, "
                            "from 1900-01-01 to 9998-12-31.",
                            "schema": {"type": "string", "format": "date"},
                        },
                        {
                            "name": "days",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 31,
                                "default": 1,
                            },
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "description": "At most this many slots, earliest first (default: the "
                            "dialect's query_limit, 50 unless the site changed it).",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                    ],
                    "responses": {
                        "200": _json("Open slots, earliest first.", "SlotList"),
                        "404": _error_response("Unknown location (code unknown_location)."),
                        **_RIS_ERRORS,
                    },
                }
            },
            "/api/ris/book-appointment": {
                "post": {
                    "operationId": "bookAppointment",
                    "summary": "Book a slot for an order. Idempotent on (order_id, slot_id).",
                    "description": "The same order_id and slot_id again returns the same status and body "
                    "without a second HL7 booking.",
                    "security": [{"ApiKey": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BookingRequest"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json(
                            "Booked (or the stored outcome of the same request).", "Booking"
                        ),
                        "404": _error_response(
                            "Unknown location (code unknown_location), or no open order with that "
                            "order_id and MRN (code unknown_order: an unknown id, another MRN and "
                            "an order that is over get the same body)."
                        ),
                        "409": _error_response(
                            "The slot is no longer available (code slot_unavailable)."
                        ),
                        **_RIS_ERRORS,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "The process is alive.",
                    "responses": {"200": _json("Alive.", "Health")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readiness",
                    "summary": "Database and RIS reachable.",
                    "responses": {
                        "200": _json("Ready.", "Readiness"),
                        "503": _json("Not ready; `checks` says why.", "Readiness"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format).",
                    "responses": {
                        "200": {
                            "description": "Metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            OPENAPI_PATH: {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "One of API_KEYS.",
                }
            },
            "responses": {
                "BadRequest": _error_response(
                    "Invalid input; the message names the field (code invalid_request). Bodies "
                    f"must be one UTF-8 JSON object nested at most {MAX_DEPTH} levels deep, and no "
                    "text in a body or query may hold control characters or lone surrogates."
                ),
                "Unauthorized": _error_response(
                    "Missing or unknown X-API-Key (code unauthorized)."
                ),
                "RisError": _error_response(
                    "The RIS answered with an error or an unreadable message (code ris_error)."
                ),
                "RisUnavailable": _error_response("The RIS is unreachable (code ris_unavailable)."),
                "RisTimeout": _error_response(
                    "The RIS did not answer within RIS_TIMEOUT_S (code ris_timeout)."
                ),
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "examples": ["slot_unavailable"]},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "Location": {
                    "type": "object",
                    "required": ["id", "name", "address", "modalities"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "examples": ["DTWN"]},
                        "name": {"type": "string", "examples": ["Downtown Imaging"]},
                        "address": {"type": "string"},
                        "modalities": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "LocationList": {
                    "type": "object",
                    "required": ["locations"],
                    "additionalProperties": False,
                    "properties": {
                        "locations": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Location"},
                        }
                    },
                },
                "Slot": _timed("An open slot; `id` is the RIS's slot id."),
                "SlotList": {
                    "type": "object",
                    "required": ["slots"],
                    "additionalProperties": False,
                    "properties": {
                        "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"}}
                    },
                },
                "BookingRequest": {
                    "type": "object",
                    "required": ["order_id", "mrn", "modality", "location", "slot_id"],
                    "properties": {
                        "order_id": _IDENTIFIER,
                        "mrn": _IDENTIFIER,
                        "modality": _MODALITY,
                        "location": _IDENTIFIER,
                        "slot_id": _IDENTIFIER,
                    },
                },
                "Booking": {
                    "type": "object",
                    "required": ["status", "confirmation_code", "appointment"],
                    "additionalProperties": False,
                    "properties": {
                        "status": {"const": "booked"},
                        "confirmation_code": {"type": "string", "pattern": "^[A-Z0-9]{4,12}$"},
                        "appointment": _timed("The booked slot; `id` is our appointment id."),
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"const": "ok"}},
                },
                "Readiness": {
                    "type": "object",
                    "required": ["status", "checks"],
                    "properties": {
                        "status": {"enum": ["ready", "unavailable"]},
                        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
    }


def install(app: web.Application) -> None:
    """Attach the document to ``app`` and serve it at ``/api/openapi.json``."""
    app[DOCUMENT] = _base()

    async def serve(_: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(app[DOCUMENT], separators=(",", ":")), content_type="application/json"
        )

    app.router.add_get(OPENAPI_PATH, serve, allow_head=False)


def add_paths(app: web.Application, fragment: dict[str, Any]) -> None:
    """Merge another component's ``paths`` and ``components`` into the app's document (see module doc)."""
    doc: dict[str, Any] = app[DOCUMENT]
    unknown = set(fragment) - {"paths", "components"}
    if unknown:
        raise ValueError(f"openapi fragment has unexpected keys: {sorted(unknown)}")
    paths: dict[str, Any] = doc["paths"]
    for path, operations in fragment.get("paths", {}).items():
        existing = paths.setdefault(path, {})
        for method, operation in operations.items():
            if method in existing:
                raise ValueError(f"openapi: {method.upper()} {path} is already documented")
            existing[method] = copy.deepcopy(operation)
    components: dict[str, Any] = doc["components"]
    for kind, entries in fragment.get("components", {}).items():
        table = components.setdefault(kind, {})
        for name, value in entries.items():
            if name in table:
                raise ValueError(f"openapi: components.{kind}.{name} is already defined")
            table[name] = copy.deepcopy(value)


def document(app: web.Application) -> dict[str, Any]:
    """A copy of the app's current document."""
    return copy.deepcopy(app[DOCUMENT])
