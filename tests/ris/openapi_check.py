"""Checks HTTP responses against the daemon's own OpenAPI document (jsonschema, draft 2020-12).

Reusable by other components' tests::

    checker = OpenApiChecker(await (await session.get(base + "/api/openapi.json")).json())
    checker.check("GET", "/api/ris/locations", response.status, response.content_type, body)
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]


class OpenApiChecker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.checked: list[tuple[str, str, int]] = []

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            target: Any = self.doc
            for part in ref[2:].split("/"):
                target = target[part]
            node = target
        return node

    def response_schema(
        self, method: str, path: str, status: int, content_type: str
    ) -> dict[str, Any] | None:
        operations = self.doc["paths"].get(path)
        assert operations is not None, f"{path} is not in the OpenAPI document"
        operation = operations.get(method.lower())
        assert operation is not None, f"{method} {path} is not in the OpenAPI document"
        responses = operation["responses"]
        response = responses.get(str(status)) or responses.get("default")
        assert response is not None, f"{method} {path}: status {status} is not documented"
        response = self._resolve(response)
        content = response.get("content", {})
        assert content_type in content, (
            f"{method} {path} {status}: {content_type} not documented ({sorted(content)})"
        )
        schema: dict[str, Any] | None = content[content_type].get("schema")
        return schema

    def check(self, method: str, path: str, status: int, content_type: str, body: Any) -> None:
        schema = self.response_schema(method, path, status, content_type)
        self.checked.append((method, path, status))
        if schema is None or content_type != "application/json":
            return
        root = {"components": self.doc["components"], **schema}
        validator = Draft202012Validator(root, format_checker=FormatChecker())
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {path} {status}: " + "; ".join(
            f"{list(e.path)}: {e.message}" for e in errors
        )

    def check_document(self) -> None:
        """Every schema is a valid 2020-12 schema and every $ref resolves."""
        assert self.doc["openapi"].startswith("3.1")

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "$ref" in node:
                    self._resolve(node)
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(self.doc)
        for schema in self.doc["components"]["schemas"].values():
            Draft202012Validator.check_schema(schema)
