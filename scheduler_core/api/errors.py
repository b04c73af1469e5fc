"""The JSON error shape: {"error": {"code", "message", "details"}} for every failure."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from scheduler_core.store.base import StoreUnavailable

log = logging.getLogger(__name__)

# Every `error.code` the API answers with: SPEC.md's list (the open API's Host and Origin
# checks answer `forbidden` and name the check in details.reason), and `bad_request` for a
# 4xx werkzeug raises that has no code of its own. The OpenAPI document lists them as an enum.
ERROR_CODES = (
    "invalid_json",
    "validation_error",
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "gone",
    "payload_too_large",
    "unavailable",
    "internal_error",
)

CODES_BY_STATUS = {
    400: "validation_error",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(StoreUnavailable)
    def _unavailable(exc: StoreUnavailable) -> Response:
        log.error("database unavailable: %s", exc)
        response = error_response(503, "unavailable", "The database is unavailable; try again.")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = CODES_BY_STATUS.get(status, "internal_error" if status >= 500 else "bad_request")
        message = {
            404: "No such resource.",
            405: "Method not allowed on this resource.",
            413: "The request body is over the size limit.",
        }.get(status, exc.description or exc.name)
        response = error_response(status, code, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Internal server error.")
