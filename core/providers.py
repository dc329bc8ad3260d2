"""The small protocol every provider adapter implements (the adapters live in
``ingest.providers``), and the words the webhook edge answers refusals with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from core.config import ConfigError, IPNetwork, ProviderSettings, Settings, check_path_token
from core.redact import WEBHOOK_PREFIX
from matcher.notifications import Callback

# What the webhook edge tells a sender it did not take, in momo's words; each adapter
# wraps them in its provider's error shape (``ProviderAdapter.refusal``).
#: 503 from the webhook: neither the inbox nor the spool could keep the callback
NOT_ACCEPTED: Final = "Temporarily unavailable, not accepted"
#: 503 from the error handler: the database failed while answering
UNAVAILABLE: Final = "Temporarily unavailable"
#: 500: an unexpected error; whether anything was kept is unknown
INTERNAL_ERROR: Final = "Internal error"
#: 403: the sender's address is not in the provider's allow-list
FORBIDDEN: Final = "Forbidden"
#: 429: too many unauthenticated requests from one address
TOO_MANY: Final = "Too many unauthenticated requests"


def rejected(message: str) -> str:
    """400: the callback was kept as rejected, not processed, because of ``message``."""
    return f"Rejected: {message}"


@dataclass(frozen=True)
class ParseContext:
    """Deployment facts a parser needs: where local times and numbers are."""

    currency: str = "KES"
    region: str = "KE"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Africa/Nairobi"))
    #: only decide whether the body is the provider's shape (the webhook's question); the
    #: payer's number is then left unclassified, for the worker to classify
    shape_only: bool = False


@dataclass(frozen=True)
class Registration:
    """How an operator registers a provider's callback URLs: what ``momo serve`` says."""

    #: the provider as its users name it ("M-PESA"), and with its article ("an M-PESA")
    title: str
    a_title: str
    #: who the callback URLs are registered with ("Safaricom")
    registrar: str
    #: the variable that sets the path token
    token_variable: str
    #: the file under MOMO_INSTANCE_PATH where the embedded default keeps a token it made
    token_file: str
    #: whether momo starts without this provider: until its path token is set, its URLs
    #: answer 404 and ``momo serve`` neither makes a token for it nor shows its URLs
    optional: bool = False
    #: the name its callback URLs carry after /webhooks/, when not the provider's own (a
    #: registrar may refuse URLs holding its brand); URLs with the provider's name still work
    url_name: str | None = None


def require_path_token(token: str | None, registration: Registration) -> str:
    """``token`` when it is set and strong enough to guard the callback URLs of the
    provider ``registration`` describes; else ConfigError naming its variable and saying
    how to make one."""
    variable = registration.token_variable
    if not token:
        raise ConfigError(
            f"{variable} is not set: the {registration.title} callback URLs need a secret "
            f"path segment. Set it to a long random string, e.g. "
            f"{variable}=$(openssl rand -hex 24)"
        )
    return check_path_token(token, variable, registration.registrar)


class ProviderAdapter(ProviderSettings, Protocol):
    """One provider: its settings block (``variables``, ``read_settings``), how its
    callbacks are authenticated, parsed and answered."""

    name: str
    #: callback kinds this provider posts, e.g. {"c2b/confirmation", ...}
    kinds: frozenset[str]
    #: result codes of a failed attempt that mean the payer cancelled it
    cancelled_codes: frozenset[int]
    registration: Registration
    #: the HTTP methods its callbacks come with (MTN sends PUT)
    methods: frozenset[str]

    def path_token(self, settings: Settings) -> str | None:
        """The secret path segment a callback must carry, or None when none is configured
        (then every callback to this provider is refused)."""
        ...

    def require_path_token(self, settings: Settings) -> str:
        """The path token, when it is set and strong enough to guard the callback URLs;
        else ConfigError naming the variable (a web process does not start without it)."""
        ...

    def with_path_token(self, settings: Settings, token: str) -> Settings:
        """``settings`` with ``token`` as this provider's path token (one ``momo serve``
        generated)."""
        ...

    def callback_paths(self, token: str) -> tuple[str, ...]:
        """The paths of the callback URLs to register, carrying ``token``."""
        ...

    def allowed_networks(self, settings: Settings) -> tuple[IPNetwork, ...]:
        """The addresses callbacks may come from; empty: any address."""
        ...

    def signature_problem(
        self, settings: Settings, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        """Why a callback's signature does not prove it is the provider's (a body changed
        on the way, a wrong or missing signature, a stale timestamp), or None when it
        does, or when the provider signs nothing. ``headers`` are looked up by name in
        any case. Asked before the body is parsed; a callback it refuses is answered 401
        and nothing is kept."""
        ...

    def rejects_unknown_accounts(self, settings: Settings) -> bool:
        """Whether a validation request for an account nobody has is refused."""
        ...

    def refusal(self, status: int, message: str, **extra: str) -> dict[str, Any]:
        """The body of an answer that did not take a callback (HTTP ``status``).

        ``message`` says why in momo's words; ``extra`` are momo's own fields (``reason``,
        ``detail``), kept in that order after the provider's.
        """
        ...

    def receipt_code(self, reference: str) -> str | None:
        """``reference`` written as this provider's receipt code, or None if it is not one."""
        ...

    def parse(self, kind: str, body: bytes, ctx: ParseContext) -> Callback:
        """Parse a raw body; raise InvalidCallback when it is not the provider's shape."""
        ...

    def acknowledge(self, kind: str) -> dict[str, Any]:
        """The body that tells the provider a callback was taken."""
        ...

    def validation_reply(self, accepted: bool) -> dict[str, Any]:
        """The body answering a validation request."""
        ...


@runtime_checkable
class RoutesItsPaths(Protocol):
    """An adapter whose callback URLs are not ``/webhooks/<name>/<path token>/<kind>`` (the
    generic webhook's ``/webhooks/generic/<source>``, which its signature authenticates).

    The webhook edge asks its ``route`` instead of comparing ``path_token`` and ``kinds``,
    and momo neither requires, generates nor prints a path token for it.
    """

    def route(
        self, settings: Settings, segment: str, kind: str | None
    ) -> tuple[ProviderAdapter, str] | None:
        """For ``/webhooks/<name>/<segment>`` (``kind`` None) or ``.../<segment>/<kind>``:
        the adapter that takes the callback and the kind it is stored as, or None when
        the path is no callback URL (404, and counted as a failure)."""
        ...


def listening(adapter: ProviderAdapter, settings: Settings) -> bool:
    """Whether momo takes ``adapter``'s callbacks at path-token URLs, and so checks its
    path token at start and shows its URLs: a required provider's always, an optional
    one's once its path token is set, never one that routes its own paths."""
    if isinstance(adapter, RoutesItsPaths):
        return False
    return not adapter.registration.optional or adapter.path_token(settings) is not None


def adapter_at(providers: Mapping[str, ProviderAdapter], segment: str) -> ProviderAdapter | None:
    """The adapter whose callback URLs carry ``segment`` after /webhooks/: its name, or the
    URL name of its registration."""
    adapter = providers.get(segment)
    if adapter is not None:
        return adapter
    return next((a for a in providers.values() if a.registration.url_name == segment), None)


def adapter_for(providers: Mapping[str, ProviderAdapter], provider: str) -> ProviderAdapter:
    """The adapter of ``provider`` (a name or a URL name); for one none is registered
    under, the first registered one's, whose error shape answers requests that name no
    provider (a wrong path, a typo)."""
    return adapter_at(providers, provider) or next(iter(providers.values()))


def adapter_for_path(providers: Mapping[str, ProviderAdapter], path: str) -> ProviderAdapter:
    """The adapter that answers ``path``: the provider a webhook path names, or the first."""
    if path.startswith(WEBHOOK_PREFIX):
        return adapter_for(providers, path[len(WEBHOOK_PREFIX) :].split("/", 1)[0])
    return next(iter(providers.values()))
