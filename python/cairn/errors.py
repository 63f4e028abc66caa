"""The one exception type the Cairn SDK raises for failed API calls.

Usage:
    try:
        run.log_param("lr", 0.2)   # "lr" was logged before as 0.1
    except cairn.CairnError as e:
        assert e.error_code == "INVALID_PARAMETER_VALUE"
        assert e.http_status == 400
"""

# Fallback error codes for non-JSON error responses, as MLflow's client maps
# them (mlflow.exceptions.get_error_code).
_HTTP_STATUS_TO_ERROR_CODE = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
}

# error_code used when no HTTP response could be obtained at all.
CONNECTION_ERROR = "CONNECTION_ERROR"


class CairnError(Exception):
    """An API call failed.

    Attributes:
        error_code: MLflow-style code, e.g. "RESOURCE_DOES_NOT_EXIST",
            "INVALID_PARAMETER_VALUE"; "CONNECTION_ERROR" when the server could
            not be reached (then http_status is None).
        http_status: the HTTP status of the failing response, or None.
        message: the server's (or the SDK's) human-readable message.
    """

    def __init__(self, message, error_code="INTERNAL_ERROR", http_status=None):
        self.message = str(message)
        self.error_code = error_code
        self.http_status = http_status
        status = f"HTTP {http_status}, " if http_status is not None else ""
        super().__init__(f"{error_code} ({status}{self.message})")

    @classmethod
    def from_response(cls, http_status, body, what=""):
        """Builds the error for a non-2xx response with raw bytes `body`."""
        import json

        code = None
        message = None
        try:
            parsed = json.loads(body.decode("utf-8")) if body else None
            if isinstance(parsed, dict):
                code = parsed.get("error_code")
                message = parsed.get("message")
        except (ValueError, UnicodeDecodeError):
            pass
        if not code:
            code = _HTTP_STATUS_TO_ERROR_CODE.get(
                http_status, "BAD_REQUEST" if 400 <= http_status < 500 else "INTERNAL_ERROR"
            )
        if message is None:
            text = body.decode("utf-8", "replace")[:500] if body else ""
            message = f"{what} failed with HTTP {http_status}: {text}".strip()
        return cls(message, error_code=code, http_status=http_status)
