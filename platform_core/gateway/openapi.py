"""The OpenAPI 3.1 description of REST API v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from platform_core.invocations.models import Status


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return response


UNAUTHENTICATED = {"401": _error("Missing, unknown or revoked API key (Authorization: Bearer ...)")}

INVOKE_ERRORS = {
    "400": _error(
        "Malformed JSON (or nested deeper than API_MAX_JSON_DEPTH), or arguments that break the input schema"
    ),
    **UNAUTHENTICATED,
    "404": _error("No such plugin or operation"),
    "413": _error("Request body too large"),
    "429": _error("The caller's tenant is over its rate or concurrency limit", retry=True),
    "502": _error("The plugin failed, its worker crashed or could not start, or its result was invalid"),
    "503": _error("No supervisor for the plugin's runtime, or no free worker", retry=True),
    "504": _error("The plugin or its worker's start-up took too long"),
}

# The invoking POSTs' extras (docs/PROGRAMS.md): Server-Sent Events on request, Idempotency-Key.
INVOKE_HEADERS = [
    {
        "name": "Accept",
        "in": "header",
        "schema": {"type": "string"},
        "description": "text/event-stream: answer Server-Sent Events (accepted, allocated, started, progress, log, "
        "then result or error with the JSON answer's body)",
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "schema": {"type": "string", "maxLength": 255},
        "description": "the same key and body from the same tenant within 24 h returns the first invocation's "
        "outcome (waiting for it while it runs) instead of running again; another body: 422",
    },
]
SSE = {
    "text/event-stream": {
        "schema": {"type": "string"},
        "x-events": "accepted, queued, allocated, started, "
        "progress {percent, message}, log {message}, cancelled, then result or error (with http_status)",
    }
}
IDEMPOTENCY_ERRORS = {
    "409": _error(
        "Cancelled on request (code cancelled); or the first request with this Idempotency-Key is still "
        "running after 10 minutes (idempotency_key_in_use)"
    ),
    "422": _error("This Idempotency-Key was used with another request in the last 24 h (idempotency_key_reused)"),
}
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

TIMINGS = {
    "type": "object",
    "properties": {k: {"type": ["number", "null"]} for k in ("allocation", "init", "execution", "release", "total")},
}


@cache
def openapi_document() -> dict[str, Any]:
    json_body = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Plugin platform API",
            "version": "1.0.0",
            "description": "Run plugins in isolated workers over gRPC; every invocation is recorded with its trace. "
            "AI agents: the Model Context Protocol (Streamable HTTP, JSON-RPC per its own specification, not "
            "described here) is served at /mcp with the same API keys: the plugins are its tools (docs/PROGRAMS.md).",
        },
        "x-mcp": {"url": "/mcp", "transport": "streamable-http", "auth": "Authorization: Bearer <API key>"},
        "paths": {
            "/api/v1/calculate/{operation}": {
                "post": {
                    "summary": "Run a calculator plugin by its operation alias (add, subtract, multiply, divide)",
                    "operationId": "calculate",
                    "parameters": [
                        {"name": "operation", "in": "path", "required": True, "schema": {"type": "string"}},
                        *INVOKE_HEADERS,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["operand1", "operand2"],
                                    "properties": {"operand1": {"type": "number"}, "operand2": {"type": "number"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The plugin's result, with invocation id, worker and timings",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/CalculationResult"}},
                                **SSE,
                            },
                        },
                        **INVOKE_ERRORS,
                        **IDEMPOTENCY_ERRORS,
                    },
                }
            },
            "/api/v1/plugins": {
                "get": {
                    "summary": "Registered plugins",
                    "operationId": "listPlugins",
                    "responses": {
                        "200": {
                            "description": "Plugins",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "plugins": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Plugin"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        **UNAUTHENTICATED,
                    },
                }
            },
            "/api/v1/plugins/{name}": {
                "get": {
                    "summary": "One plugin with its JSON Schemas",
                    "operationId": "getPlugin",
                    "parameters": [name_param],
                    "responses": {
                        "200": {
                            "description": "Plugin",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Plugin"}}},
                        },
                        "404": _error("No such plugin"),
                        **UNAUTHENTICATED,
                    },
                }
            },
            "/api/v1/plugins/{name}/invoke": {
                "post": {
                    "summary": "Run any plugin with JSON arguments",
                    "operationId": "invokePlugin",
                    "parameters": [name_param, *INVOKE_HEADERS],
                    "requestBody": json_body,
                    "responses": {
                        "200": {
                            "description": "Result",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/InvokeResult"}},
                                **SSE,
                            },
                        },
                        **INVOKE_ERRORS,
                        **IDEMPOTENCY_ERRORS,
                    },
                }
            },
            "/api/v1/plugins/{name}/invocations": {
                "post": {
                    "summary": "Start an async invocation: queued durably, run by a gateway; follow it by its id",
                    "operationId": "startInvocation",
                    "parameters": [name_param, INVOKE_HEADERS[1]],
                    "requestBody": json_body,
                    "responses": {
                        "202": {
                            "description": "Queued (or, with a known Idempotency-Key, the first one's id)",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
                        },
                        **UNAUTHENTICATED,
                        "404": _error("No such plugin"),
                        "413": _error("Request body too large"),
                        "422": IDEMPOTENCY_ERRORS["422"],
                    },
                }
            },
            "/api/v1/invocations": {
                "get": {
                    "summary": "Invocation history, newest first",
                    "operationId": "listInvocations",
                    "parameters": [
                        {"name": "plugin", "in": "query", "schema": {"type": "string"}},
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(Status.values)}},
                        {"name": "tenant", "in": "query", "schema": {"type": "string"}},
                        {"name": "worker", "in": "query", "schema": {"type": "string"}},
                        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10**9}},
                        {
                            "name": "page_size",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of invocations",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/InvocationPage"}}
                            },
                        },
                        "400": _error("Bad filter or page parameter"),
                        **UNAUTHENTICATED,
                    },
                }
            },
            "/api/v1/invocations/{id}": {
                "get": {
                    "summary": "One invocation with its trace and worker log",
                    "operationId": "getInvocation",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "Invocation",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Invocation"}}},
                        },
                        "404": _error("No such invocation"),
                        **UNAUTHENTICATED,
                    },
                }
            },
            "/api/v1/invocations/{id}/events": {
                "get": {
                    "summary": "An invocation's events from its start (Server-Sent Events): replayed, then live, "
                    "then its outcome",
                    "operationId": "invocationEvents",
                    "parameters": [ID_PARAM],
                    "responses": {
                        "200": {"description": "The event stream", "content": SSE},
                        "404": _error("No such invocation"),
                        **UNAUTHENTICATED,
                    },
                }
            },
            "/api/v1/invocations/{id}/cancel": {
                "post": {
                    "summary": "Cancel a queued (it never runs) or running invocation (cancelled on its worker)",
                    "operationId": "cancelInvocation",
                    "parameters": [ID_PARAM],
                    "responses": {
                        "200": {
                            "description": "Cancelled: the invocation with its trace",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Invocation"}}},
                        },
                        "202": {
                            "description": "Still being cancelled after 15 s (follow it by its id)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
                        },
                        "404": _error("No such invocation"),
                        "409": _error("The invocation had already finished (invocation_finished)"),
                        **UNAUTHENTICATED,
                    },
                }
            },
            "/api/v1/workers": {
                "get": {
                    "summary": "Workers of every supervisor",
                    "operationId": "listWorkers",
                    "responses": {
                        "200": {
                            "description": "Supervisors and their workers",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **UNAUTHENTICATED,
                    },
                }
            },
            "/api/v1/health": {
                "get": {
                    "summary": "Gateway, database and supervisor health",
                    "operationId": "health",
                    "responses": {
                        "200": {
                            "description": "Healthy",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "503": {
                            "description": "Database unreachable",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
                        },
                        "invocation_id": {"type": "string"},
                        "worker_id": {"type": ["string", "null"]},
                        "timings_ms": TIMINGS,
                    },
                },
                "CalculationResult": {
                    "type": "object",
                    "required": ["result", "invocation_id", "timings_ms"],
                    "properties": {
                        "result": {"type": "number"},
                        "operation": {"type": "string"},
                        "operand1": {"type": "number"},
                        "operand2": {"type": "number"},
                        "invocation_id": {"type": "string"},
                        "worker_id": {"type": "string"},
                        "timings_ms": TIMINGS,
                    },
                },
                "InvokeResult": {
                    "type": "object",
                    "required": ["invocation_id", "result"],
                    "properties": {
                        "invocation_id": {"type": "string"},
                        "plugin": {"type": "string"},
                        "status": {"type": "string"},
                        "result": {},
                        "worker_id": {"type": "string"},
                        "timings_ms": TIMINGS,
                    },
                },
                "Plugin": {
                    "type": "object",
                    "required": ["name", "runtime"],
                    "properties": {
                        "name": {"type": "string"},
                        "operation": {"type": ["string", "null"]},
                        "description": {"type": "string"},
                        "runtime": {"type": "string"},
                        "backend": {"type": ["string", "null"]},
                        "mode": {"type": "string"},
                        "timeout_s": {"type": "number"},
                        "enabled": {"type": "boolean"},
                        "invoke_url": {"type": "string"},
                        "input_schema": {"type": "object"},
                        "output_schema": {"type": "object"},
                    },
                },
                "Invocation": {
                    "type": "object",
                    "required": ["id", "plugin", "status"],
                    "properties": {
                        "id": {"type": "string"},
                        "plugin": {"type": "string"},
                        "status": {"type": "string"},
                        "http_status": {"type": ["integer", "null"]},
                        "timings_ms": TIMINGS,
                        "trace": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["invocation_id", "status", "location"],
                    "properties": {
                        "invocation_id": {"type": "string"},
                        "status": {"type": "string"},
                        "location": {"type": "string"},
                        "events": {"type": "string"},
                        "cancel": {"type": "string"},
                    },
                },
                "InvocationPage": {
                    "type": "object",
                    "required": ["count", "results"],
                    "properties": {
                        "count": {"type": "integer"},
                        "page": {"type": "integer"},
                        "page_size": {"type": "integer"},
                        "pages": {"type": "integer"},
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Invocation"}},
                    },
                },
            }
        },
    }
