"""Typed errors. The CLI maps each family to one exit code and prints one line."""

from __future__ import annotations


class CounterscanError(Exception):
    """Base of every error the product raises on purpose."""

    exit_code = 1


class UserError(CounterscanError):
    """The request cannot be carried out as asked: bad argument, unknown name, missing file."""

    exit_code = 2


class NotFoundError(UserError):
    """A named thing (brand, member, listing, file) does not exist."""


class UnknownBrandError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown brand {name!r} (register it with `counterscan brands add`)")
        self.name = name


class PermissionDeniedError(UserError):
    """The acting member may not touch this brand."""

    exit_code = 5


class DataError(CounterscanError):
    """Input data is unusable: an unreadable image, a malformed feed row."""

    exit_code = 3


class ImageError(DataError):
    """An image could not be accepted; ``reason`` is short and names no path."""

    def __init__(self, reason: str, *, source: str | None = None) -> None:
        message = f"{source}: {reason}" if source else reason
        super().__init__(message)
        self.reason = reason
        self.source = source


class ImageDecodeError(ImageError):
    """Not an image, an unsupported format, or a corrupt/truncated file."""


class ImageTooLargeError(ImageError):
    """Too many bytes or too many pixels (decompression bomb guard)."""


class ExternalError(CounterscanError):
    """Something outside us failed: the database, the network."""

    exit_code = 4


class ModelUnavailableError(ExternalError):
    """A learned model's weights are missing or damaged: the package that ships them is named."""


class AuthenticationError(PermissionDeniedError):
    """No key, or a key that does not belong to the named member."""


class RateLimitedError(AuthenticationError):
    """Too many failed authentications from this client or for this key prefix: wait and retry."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TrainingRefusedError(CounterscanError):
    """Training ran but made no model: too few verdicts of a class, or the gate kept the current scoring.

    Not a usage problem: the command was right, the verdicts are not yet enough. The message says
    what is missing (how many more of which verdict) or what the gate compared.
    """

    exit_code = 6


class LockHeldError(CounterscanError):
    """Another scan holds the lock (its holder and start are in the message)."""

    exit_code = 12
