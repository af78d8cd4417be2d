"""What can go wrong when talking to a GPU cloud, as one hierarchy the operator can read.

Every message names the provider and what it was asked to do. Messages are built from our own
words plus a short excerpt of the provider's error text, scrubbed of the API key (http_api.py), so
an exception can be shown on the console or logged as it is.
"""

from __future__ import annotations

LABELS = {"runpod": "RunPod", "vast": "Vast.ai", "lambda": "Lambda", "local": "Local", "ssh": "SSH"}


def label(provider: str) -> str:
    return LABELS.get(provider, provider)


class ProviderError(Exception):
    """Base of every provider failure. `retryable` errors may succeed if the call is repeated."""

    retryable = False

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.status = status
        # True when the provider may have acted on the request although we saw no answer (a
        # timeout after the request was sent, a 5xx): repeating a create could rent twice.
        self.maybe_applied = False
        self.attempts = 1

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (gave up after {self.attempts} attempts)"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.provider!r}, {str(self)!r})"


class MissingCredentials(ProviderError):
    """No API key is configured for the provider."""


class BadCredentials(ProviderError):
    """The provider refused the API key (401/403)."""


class OfferTaken(ProviderError):
    """The offer or capacity was gone by the time we asked for it; pick another offer."""


class NotFound(ProviderError):
    """The provider has no such instance (it may have been destroyed already)."""


class InvalidRequest(ProviderError):
    """The provider rejected the request itself (4xx): repeating it would not help."""


class BadResponse(ProviderError):
    """The provider answered with something we cannot read (its API may have changed)."""


class OrphanedInstance(ProviderError):
    """An instance was rented but is unusable and could not be destroyed: destroy it by hand."""

    def __init__(self, provider: str, message: str, *, instance_id: str) -> None:
        super().__init__(provider, message)
        self.instance_id = instance_id


class RateLimited(ProviderError):
    """429: the provider asks us to slow down, possibly saying for how long (Retry-After)."""

    retryable = True

    def __init__(self, provider: str, message: str, *, retry_after_s: float | None = None,
                 status: int | None = 429) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    """5xx, a timeout or a failed connection: the provider may answer if asked again."""

    retryable = True

    def __init__(self, provider: str, message: str, *, maybe_applied: bool, status: int | None = None) -> None:
        super().__init__(provider, message, status=status)
        self.maybe_applied = maybe_applied
