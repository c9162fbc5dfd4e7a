"""Why a request cannot be answered, as types: the parsers and the data plane raise these,
and each protocol's routes turn them into its own status and error shape, in one place
(serving/routes/__init__.py: `status_of`)."""

from __future__ import annotations


class RequestError(Exception):
    """The request cannot be scored as sent; the message names the field or value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(RequestError):
    """The body's shape, a field or a value is wrong for this model."""


class MissingFieldsError(InvalidRequestError):
    """Required feature columns left out of the request."""

    def __init__(self, where: str, missing: list[str]) -> None:
        super().__init__(f"{where}: missing required field(s) {missing}")
        self.missing = missing


class TooLargeError(RequestError):
    """More rows (or bytes) than the server takes in one request."""


class OverRateError(RequestError):
    """More rows than the client's rate holds now (429, with Retry-After)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelRefusedError(RequestError):
    """Valid input that the model itself could not score."""
