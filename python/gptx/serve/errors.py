"""OpenAI-style API errors: {"error": {"message", "type", "param", "code"}} with the HTTP status that goes with them."""
from __future__ import annotations


class APIError(Exception):
    """An error a client caused (or must see): becomes a JSON error body with `status`."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
             500: "server_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


def bad(param: str, message: str, code: str = "invalid_value") -> APIError:
    """A 400 naming the request field at fault (dotted for nested ones: messages[2].content)."""
    return APIError(400, f"{param}: {message}", param=param, code=code)
