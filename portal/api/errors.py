"""The collector API's refusals: an HTTP status, a stable machine code and a sentence for people.

Below the API's services and views alike, so that a service can refuse in the API's own
words (a view, a command or a job then decides how to show the refusal).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal of the API: its HTTP status, a stable machine code and a sentence for people.

    ``fields`` (for ``invalid_request``) lists each field at fault with what is wrong with it;
    ``headers`` are added to the answer (``WWW-Authenticate``, ``Retry-After``).
    """

    def __init__(self, status: int, code: str, message: str, *,
                 fields: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the answer."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields is not None:
            body["fields"] = self.fields
        return body


def invalid(problems: list[tuple[str, str]]) -> ApiError:
    """Return the 400 answer naming each field at fault."""
    fields = [{"field": field, "message": message} for field, message in problems]
    summary = "; ".join(f"{field} {message}" for field, message in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    noun = "field is" if len(problems) == 1 else "fields are"
    return ApiError(400, "invalid_request",
                    f"{len(problems)} {noun} not valid: {summary}{more}.", fields=fields)
