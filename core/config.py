"""Settings, read from the environment once, into one frozen object.

Nothing else in momo reads ``os.environ``. A setting that is wrong fails at
start-up with a message naming the variable and what it should look like.
Each provider adapter reads its own block (its ``MOMO_<PROVIDER>_*`` variables)
when the settings are loaded; ``ingest.providers.load_settings`` passes every
registered adapter.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable.

    A password inside the message (a URL echoed back to say what was wrong with it) is
    masked here, so no way of raising one can print it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(hide_passwords(message))


#: ``scheme://user:password@`` up to the last ``@`` before the host; the password is group 2
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)([^\s/?#]*)(@)")
#: ``?password=...`` and the like, as redis and amqp URLs may carry it
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd|pass)=)([^&;#\s]*)", re.IGNORECASE)
PASSWORD_MASK = "***"  # noqa: S105 - what is shown instead of a password


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it masked (``user:***@host``); the
    placeholder ``PASSWORD`` of a message's example URL stays.

    The one way momo shows a database or broker URL: messages, logs and start-up lines.
    """
    text = _URL_PASSWORD.sub(
        lambda m: m[1] + PASSWORD_MASK + m[3] if m[2] not in ("", "PASSWORD") else m[0], text
    )
    return _QUERY_PASSWORD.sub(lambda m: m[1] + PASSWORD_MASK if m[2] else m[0], text)


#: anyone who knows a provider's path token can post payments: it must be long and random
MIN_PATH_TOKEN_LENGTH = 32
#: what a path token made of these (letters and digits only, any case) is taken to be: a
#: stand-in left in place of a real secret (deploy/momo.env.example ships ``change-me``)
PLACEHOLDER_PATH_TOKENS = frozenset(
    {
        "changeme",
        "replaceme",
        "secret",
        "mysecret",
        "yoursecret",
        "token",
        "pathtoken",
        "yourtoken",
        "password",
        "placeholder",
        "example",
        "test",
        "todo",
    }
)
#: a placeholder repeated or padded to length is still one
PLACEHOLDER_WORDS = ("changeme", "replaceme", "placeholder")
#: characters that stand for themselves in a URL path segment (RFC 3986 "unreserved")
PATH_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: the embedded default's database: a file in the working directory
EMBEDDED_DATABASE_URL = "sqlite:///momo.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = EMBEDDED_DATABASE_URL
    broker_url: str | None = None
    default_region: str = "KE"
    timezone: str = "Africa/Nairobi"
    currency: str = "KES"
    trusted_proxy_hops: int = 0
    #: an inbox row still pending after this many seconds is re-enqueued by the sweeper
    sweep_after_seconds: int = 30
    #: how often beat (or the embedded worker) runs the sweeper
    sweep_interval_seconds: int = 15
    #: /readyz says no worker is working when none finished a task for this long
    worker_seen_within_seconds: int = 60
    #: how many inbox rows one worker transaction claims
    batch_size: int = 500
    #: `momo check` reports an inbox row still pending after this many processing attempts
    max_attempts: int = 5
    #: wrong-token or disallowed webhook requests one address may make per minute before 429
    unauthenticated_per_minute: int = 60
    #: where the embedded default keeps what it generates (the providers' path tokens)
    instance_path: Path = field(default_factory=lambda: Path("instance"))
    #: where callbacks wait, fsynced, while the database is unreachable (default: instance/spool)
    spool_dir: Path | None = None
    spool_max_bytes: int = 64 * 1024 * 1024
    spool_drain_seconds: int = 5
    #: a webhook's inbox write (and its connect) that the database has not answered within
    #: this long goes to the spool instead; well inside the provider's own timeout
    db_write_timeout_seconds: int = 3
    #: most PostgreSQL connections one web process opens for webhook writes, whatever its
    #: threads; a write that finds them all busy for the write deadline goes to the spool
    db_write_connections: int = 4
    #: most callbacks one inbox write commits together: callbacks stored at once on a
    #: web process's threads share one INSERT and one commit (1: one write each)
    db_write_batch: int = 64
    #: PostgreSQL cancels any other statement after this long; a database that does not
    #: answer at all is given up on a little later (API, workers, drainer, commands)
    db_statement_timeout_seconds: int = 20
    #: where providers reach this momo from outside (https://pay.example.com): the start
    #: of the callback URLs sent with payment requests; None: no requests can be made
    public_url: str | None = None
    #: the provider a payment request goes to when it names none and no provider is known
    #: to serve the phone's network
    default_provider: str | None = None
    #: a payment request not settled by its callback this long after it was made is
    #: settled by asking its provider (and asked again as often while undecided)
    request_query_after_seconds: int = 90
    #: a payment request no answer settled this long after it was made is expired
    request_expire_after_seconds: int = 600
    #: provider name -> that provider's own settings block, read by its adapter
    providers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.instance_path / "spool"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_embedded(self) -> bool:
        """No broker: the queue is worked in-process by ``momo serve``."""
        return self.broker_url is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_provider(self, name: str, block: object) -> Settings:
        """These settings with provider ``name``'s block replaced by ``block``."""
        return replace(self, providers={**self.providers, name: block})


class ProviderSettings(Protocol):
    """What loading the settings needs of a provider adapter: its variables and a reader
    for its block."""

    name: str
    #: every MOMO_* variable the block is read from
    variables: tuple[str, ...]

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> object:
        """The provider's block from ``env``; ConfigError naming the variable when one is bad."""
        ...


def _letters(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def path_token_weakness(token: str, variable: str) -> str | None:
    """Why ``token`` cannot guard a callback URL, or None when it can.

    ``variable`` is where the token is set: its name, spelt as the token, is a placeholder.
    """
    letters = _letters(token)
    placeholders = PLACEHOLDER_PATH_TOKENS | {_letters(variable.removeprefix("MOMO_"))}
    if letters in placeholders or any(w in letters for w in PLACEHOLDER_WORDS):
        return f"is a placeholder ({token[:40]!r}), not a secret"
    if len(token) < MIN_PATH_TOKEN_LENGTH:
        return (
            f"is {len(token)} characters long; it must be at least {MIN_PATH_TOKEN_LENGTH} "
            "random characters"
        )
    if not PATH_TOKEN_CHARACTERS.fullmatch(token):
        return "has characters a URL path would change (use only letters, digits and - _ . ~)"
    if len(set(token)) < 8:
        return "uses fewer than 8 different characters, so it is not random"
    return None


def check_path_token(token: str, variable: str, registrar: str) -> str:
    """``token`` when it can guard a callback URL; else ConfigError naming ``variable``, and
    ``registrar``, where the callback URLs are registered."""
    weakness = path_token_weakness(token, variable)
    if weakness is not None:
        raise ConfigError(
            f"{variable} {weakness}: anyone who knows it can post payments to momo. Make one "
            f"with `openssl rand -hex 24` (48 characters), set {variable} to it and register "
            f"the new callback URLs with {registrar}."
        )
    return token


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _database_url(raw: str) -> str:
    # SQLAlchemy's plain postgresql:// means psycopg2; momo ships psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def parse_networks(raw: str, variable: str, example: str) -> tuple[IPNetwork, ...]:
    """The addresses and CIDR blocks in ``raw`` (separated by commas or semicolons); a
    ConfigError naming ``variable``, with ``example`` of a good list, for one that is not."""
    networks = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"{variable} has {part!r}, which is not an IP address or CIDR "
                f"block; give a comma-separated list such as {example}"
            ) from None
    return tuple(networks)


#: every variable momo reads besides the providers' own (README's Configuration table
#: names each; ``ingest.providers.variables()`` lists them all)
VARIABLES = (
    "MOMO_DATABASE_URL",
    "MOMO_BROKER_URL",
    "MOMO_DEFAULT_REGION",
    "MOMO_TIMEZONE",
    "MOMO_CURRENCY",
    "MOMO_TRUSTED_PROXY_HOPS",
    "MOMO_SWEEP_AFTER_SECONDS",
    "MOMO_SWEEP_INTERVAL_SECONDS",
    "MOMO_WORKER_SEEN_WITHIN_SECONDS",
    "MOMO_BATCH_SIZE",
    "MOMO_MAX_ATTEMPTS",
    "MOMO_UNAUTHENTICATED_PER_MINUTE",
    "MOMO_INSTANCE_PATH",
    "MOMO_SPOOL_DIR",
    "MOMO_SPOOL_MAX_BYTES",
    "MOMO_SPOOL_DRAIN_SECONDS",
    "MOMO_DB_WRITE_TIMEOUT_SECONDS",
    "MOMO_DB_WRITE_CONNECTIONS",
    "MOMO_DB_WRITE_BATCH",
    "MOMO_DB_STATEMENT_TIMEOUT_SECONDS",
    "MOMO_PUBLIC_URL",
    "MOMO_DEFAULT_PROVIDER",
    "MOMO_REQUEST_QUERY_AFTER_SECONDS",
    "MOMO_REQUEST_EXPIRE_AFTER_SECONDS",
    "MOMO_LOG_FORMAT",
    "MOMO_LOG_LEVEL",
    "MOMO_METRICS_PORT",
)
#: MOMO_* names read by momo's own tests, benches and CI, not by momo: no warning for them
NOT_SETTINGS = ("MOMO_REQUIRE_SERVICES", "MOMO_SAMPLES_DIR", "MOMO_TEST_", "MOMO_BENCH_")

_warned: set[str] = set()
_warned_lock = threading.Lock()


def unknown_variables(
    env: Mapping[str, str], known: tuple[str, ...] = VARIABLES
) -> dict[str, str | None]:
    """Each MOMO_* name in ``env`` that momo does not read (is not in ``known``), with the
    known name it is closest to (None when none is close): a misspelt variable is
    otherwise ignored."""
    unknown: dict[str, str | None] = {}
    for name in sorted(env):
        if not name.startswith("MOMO_") or name in known or name.startswith(NOT_SETTINGS):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        unknown[name] = close[0] if close else None
    return unknown


def _warn_unknown(env: Mapping[str, str], known: tuple[str, ...]) -> None:
    # once per name and process: every start reads the settings, some several times
    for name, close in unknown_variables(env, known).items():
        with _warned_lock:
            if name in _warned:
                continue
            _warned.add(name)
        hint = f"did you mean {close}? " if close else ""
        log.warning(
            "%s is set but momo does not read it: %sits value is ignored. Rename or remove it "
            "(README's Configuration table lists every variable)",
            name,
            hint,
        )


def _database_url_or_default(
    env: Mapping[str, str], broker: str | None, known: tuple[str, ...]
) -> str:
    given = env.get("MOMO_DATABASE_URL", "").strip()
    if given:
        return _database_url(given)
    if broker is not None:
        # With a broker this is a production set-up: the SQLite default there would take
        # callbacks into a local file no worker, API or other host reads, and say ok.
        hint = ""
        close = [n for n, c in unknown_variables(env, known).items() if c == "MOMO_DATABASE_URL"]
        if close:
            hint = f" ({close[0]} is set: a misspelling?)"
        raise ConfigError(
            f"MOMO_DATABASE_URL is not set{hint}, but MOMO_BROKER_URL is: separate workers "
            "need the shared database, not the embedded default's local SQLite file. Set "
            "MOMO_DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or give a "
            "sqlite:///PATH explicitly if that is really meant)"
        )
    return EMBEDDED_DATABASE_URL


def load_settings(
    env: Mapping[str, str] | None = None, *, providers: Iterable[ProviderSettings] = ()
) -> Settings:
    """Read every MOMO_* variable once, each of ``providers`` reading its own block; raise
    ConfigError naming a bad one.

    A MOMO_* variable neither momo nor a provider reads is logged (once), with the name it
    is closest to.
    """
    env = os.environ if env is None else env
    providers = tuple(providers)
    known = VARIABLES + tuple(v for provider in providers for v in provider.variables)
    _warn_unknown(env, known)
    region = env.get("MOMO_DEFAULT_REGION", "KE").strip().upper() or "KE"
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"MOMO_DEFAULT_REGION={region!r} is not a known region; use a two-letter code "
            "such as KE, UG, TZ"
        )
    timezone = env.get("MOMO_TIMEZONE", "Africa/Nairobi").strip() or "Africa/Nairobi"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"MOMO_TIMEZONE={timezone!r} is not an IANA time zone; use e.g. Africa/Nairobi"
        ) from None
    currency = env.get("MOMO_CURRENCY", "KES").strip() or "KES"
    if not re.fullmatch("[A-Za-z]{3}", currency):
        raise ConfigError(f"MOMO_CURRENCY={currency!r} is not a three-letter code such as KES")
    currency = currency.upper()
    broker = env.get("MOMO_BROKER_URL", "").strip() or None
    if broker and not broker.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise ConfigError(
            f"MOMO_BROKER_URL={hide_passwords(broker)!r} is not a redis:// or amqp:// URL; "
            "leave it unset to work the queue in-process"
        )
    database_url = _database_url_or_default(env, broker, known)
    sweep_interval = _int(env, "MOMO_SWEEP_INTERVAL_SECONDS", 15, minimum=1)
    settings = Settings(
        database_url=database_url,
        broker_url=broker,
        default_region=region,
        timezone=timezone,
        currency=currency,
        trusted_proxy_hops=_int(env, "MOMO_TRUSTED_PROXY_HOPS", 0),
        sweep_after_seconds=_int(env, "MOMO_SWEEP_AFTER_SECONDS", 30, minimum=1),
        sweep_interval_seconds=sweep_interval,
        worker_seen_within_seconds=_worker_seen_within(env, sweep_interval),
        batch_size=_int(env, "MOMO_BATCH_SIZE", 500, minimum=1),
        max_attempts=_int(env, "MOMO_MAX_ATTEMPTS", 5, minimum=1),
        unauthenticated_per_minute=_int(env, "MOMO_UNAUTHENTICATED_PER_MINUTE", 60, minimum=1),
        instance_path=Path(env.get("MOMO_INSTANCE_PATH", "").strip() or "instance"),
        spool_dir=Path(env["MOMO_SPOOL_DIR"].strip())
        if env.get("MOMO_SPOOL_DIR", "").strip()
        else None,
        spool_max_bytes=_int(env, "MOMO_SPOOL_MAX_BYTES", 64 * 1024 * 1024, minimum=1024),
        spool_drain_seconds=_int(env, "MOMO_SPOOL_DRAIN_SECONDS", 5, minimum=1),
        db_write_timeout_seconds=_int(env, "MOMO_DB_WRITE_TIMEOUT_SECONDS", 3, minimum=1),
        db_write_connections=_int(env, "MOMO_DB_WRITE_CONNECTIONS", 4, minimum=1),
        db_write_batch=_int(env, "MOMO_DB_WRITE_BATCH", 64, minimum=1),
        db_statement_timeout_seconds=_int(env, "MOMO_DB_STATEMENT_TIMEOUT_SECONDS", 20, minimum=1),
        public_url=_public_url(env.get("MOMO_PUBLIC_URL", "")),
        default_provider=env.get("MOMO_DEFAULT_PROVIDER", "").strip().lower() or None,
        request_query_after_seconds=_int(env, "MOMO_REQUEST_QUERY_AFTER_SECONDS", 90, minimum=5),
        request_expire_after_seconds=_int(
            env, "MOMO_REQUEST_EXPIRE_AFTER_SECONDS", 600, minimum=60
        ),
    )
    names = [provider.name for provider in providers]
    if names and settings.default_provider and settings.default_provider not in names:
        raise ConfigError(
            f"MOMO_DEFAULT_PROVIDER={settings.default_provider!r} is not a provider momo "
            f"speaks; use one of: {', '.join(names)}"
        )
    blocks = {provider.name: provider.read_settings(env, settings) for provider in providers}
    return settings.with_overrides(providers=blocks)


def _worker_seen_within(env: Mapping[str, str], sweep_interval: int) -> int:
    """MOMO_WORKER_SEEN_WITHIN_SECONDS: by default a minute, or four sweep intervals when
    that is longer; given, at least two (a worker notes its heartbeat at most every half
    interval, and an idle one has only the sweeper's task every interval to note)."""
    least = 2 * sweep_interval
    seen_within = _int(env, "MOMO_WORKER_SEEN_WITHIN_SECONDS", max(60, 4 * sweep_interval))
    if seen_within < least:
        raise ConfigError(
            f"MOMO_WORKER_SEEN_WITHIN_SECONDS={seen_within} must be at least {least}, twice "
            f"MOMO_SWEEP_INTERVAL_SECONDS ({sweep_interval}): an idle worker is heard of "
            "once per sweep interval"
        )
    return seen_within


def _public_url(raw: str) -> str | None:
    """MOMO_PUBLIC_URL without its trailing slash; ConfigError when it is not a bare
    http(s) origin with an optional path."""
    url = raw.strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"MOMO_PUBLIC_URL={url!r} is not the https:// address providers reach momo at; "
            "give e.g. https://pay.example.com (providers post payment results under it)"
        )
    return url
