"""core.config: the environment read once into Settings, or a ConfigError naming the variable.

Settings are loaded as every process loads them, through ``ingest.providers.load_settings``:
each registered provider reads its own block (M-PESA's is ``MOMO_MPESA_*``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from core import config
from core.config import ConfigError, Settings, hide_passwords
from ingest.providers import ADAPTERS, load_settings, variables
from ingest.providers.airtel import AirtelSettings
from ingest.providers.generic import GenericSettings
from ingest.providers.mpesa import MpesaSettings, settings_of
from ingest.providers.mtn import MtnSettings
from tests.conftest import PATH_TOKEN, ROOT, mpesa_block

#: as `openssl rand -hex 24` makes one
STRONG_TOKEN = "3f9a1c0e5b7d2e8f4a6c1b9d0e7f2a5c8b3d6e1f4a7c0b9d"

# --- load_settings: defaults --------------------------------------------------------------


class TestLoadSettingsDefaults:
    def test_an_empty_environment_gives_the_embedded_defaults(self) -> None:
        settings = load_settings({})

        assert settings.database_url == "sqlite:///momo.db"
        assert settings.broker_url is None
        assert settings.default_region == "KE"
        assert settings.timezone == "Africa/Nairobi"
        assert settings.currency == "KES"
        assert settings_of(settings).validation == "accept"
        assert settings_of(settings).path_token is None
        assert settings_of(settings).allowed_ips == ()
        assert settings.trusted_proxy_hops == 0
        assert settings.instance_path == Path("instance")
        assert settings.is_embedded
        assert settings.is_sqlite

    def test_blank_values_count_as_unset(self) -> None:
        settings = load_settings(
            {
                "MOMO_DATABASE_URL": "  ",
                "MOMO_BROKER_URL": "",
                "MOMO_DEFAULT_REGION": " ",
                "MOMO_TIMEZONE": "",
                "MOMO_CURRENCY": "",
                "MOMO_MPESA_VALIDATION": " ",
                "MOMO_MPESA_PATH_TOKEN": "   ",
                "MOMO_TRUSTED_PROXY_HOPS": "",
            }
        )

        assert settings == load_settings({})

    def test_the_default_settings_object_agrees_with_an_empty_environment(self) -> None:
        assert config.load_settings({}) == Settings()
        loaded = load_settings({})
        assert loaded.with_overrides(providers={}) == Settings()
        assert loaded.providers["mpesa"] == MpesaSettings()
        # Airtel collects in the default region (KE), so that is its country
        assert loaded.providers["airtel"] == AirtelSettings(country="KE")
        assert loaded.providers["mtn"] == MtnSettings()
        assert loaded.providers["generic"] == GenericSettings()

    def test_variables_other_than_momos_are_ignored(self) -> None:
        assert load_settings({"DATABASE_URL": "postgresql://elsewhere/db"}) == load_settings({})


# --- load_settings: values read -----------------------------------------------------------


class TestLoadSettingsValues:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("postgresql://momo:pw@db:5432/momo", "postgresql+psycopg://momo:pw@db:5432/momo"),
            ("postgres://momo@db/momo", "postgresql+psycopg://momo@db/momo"),
            ("postgresql+psycopg://momo@db/momo", "postgresql+psycopg://momo@db/momo"),
            ("sqlite:////var/lib/momo/momo.db", "sqlite:////var/lib/momo/momo.db"),
        ],
    )
    def test_postgresql_urls_are_pointed_at_psycopg_3(self, given: str, expected: str) -> None:
        settings = load_settings({"MOMO_DATABASE_URL": given})

        assert settings.database_url == expected
        assert settings.is_sqlite == expected.startswith("sqlite")

    @pytest.mark.parametrize(
        "broker",
        ["redis://localhost:6379/0", "rediss://cache:6380/1", "amqp://guest@mq//", "amqps://mq"],
    )
    def test_redis_and_amqp_brokers_are_accepted(self, broker: str) -> None:
        settings = load_settings(
            {"MOMO_BROKER_URL": broker, "MOMO_DATABASE_URL": "postgresql://db/m"}
        )

        assert settings.broker_url == broker
        assert not settings.is_embedded

    def test_allowed_ips_are_parsed_from_a_comma_or_semicolon_separated_list(self) -> None:
        settings = load_settings(
            {"MOMO_MPESA_ALLOWED_IPS": " 196.201.214.0/24, 196.201.213.114;2001:db8::/32,, "}
        )

        assert settings_of(settings).allowed_ips == (
            ipaddress.ip_network("196.201.214.0/24"),
            ipaddress.ip_network("196.201.213.114/32"),
            ipaddress.ip_network("2001:db8::/32"),
        )

    def test_a_cidr_with_host_bits_set_means_its_network(self) -> None:
        settings = load_settings({"MOMO_MPESA_ALLOWED_IPS": "196.201.214.77/24"})

        assert settings_of(settings).allowed_ips == (ipaddress.ip_network("196.201.214.0/24"),)
        assert ipaddress.ip_address("196.201.214.1") in settings_of(settings).allowed_ips[0]

    def test_region_and_currency_are_read_in_any_case(self) -> None:
        settings = load_settings({"MOMO_DEFAULT_REGION": "ug", "MOMO_CURRENCY": "ugx"})

        assert (settings.default_region, settings.currency) == ("UG", "UGX")

    def test_the_other_values_are_read(self, tmp_path: Path) -> None:
        settings = load_settings(
            {
                "MOMO_TIMEZONE": "Africa/Kampala",
                "MOMO_MPESA_VALIDATION": "reject-unknown-account",
                "MOMO_MPESA_PATH_TOKEN": f" {STRONG_TOKEN} ",
                "MOMO_TRUSTED_PROXY_HOPS": "2",
                "MOMO_SWEEP_AFTER_SECONDS": "60",
                "MOMO_SWEEP_INTERVAL_SECONDS": "5",
                "MOMO_BATCH_SIZE": "25",
                "MOMO_INSTANCE_PATH": str(tmp_path),
                "MOMO_DB_WRITE_TIMEOUT_SECONDS": "2",
                "MOMO_DB_STATEMENT_TIMEOUT_SECONDS": "45",
            }
        )

        assert settings.timezone == "Africa/Kampala"
        assert str(settings.zone) == "Africa/Kampala"
        assert settings_of(settings).validation == "reject-unknown-account"
        assert settings_of(settings).path_token == STRONG_TOKEN
        assert settings.trusted_proxy_hops == 2
        assert settings.sweep_after_seconds == 60
        assert settings.sweep_interval_seconds == 5
        assert settings.batch_size == 25
        assert settings.instance_path == tmp_path
        assert settings.db_write_timeout_seconds == 2
        assert settings.db_statement_timeout_seconds == 45


# --- load_settings: bad values ------------------------------------------------------------


class TestLoadSettingsRefusesBadValues:
    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("MOMO_DEFAULT_REGION", "XX"),
            ("MOMO_DEFAULT_REGION", "Kenya"),
            ("MOMO_TIMEZONE", "Mars/Olympus"),
            ("MOMO_TIMEZONE", "/etc/passwd"),
            ("MOMO_TIMEZONE", "Africa/../Europe/Paris"),
            ("MOMO_CURRENCY", "KSH1"),
            ("MOMO_CURRENCY", "K3S"),
            ("MOMO_CURRENCY", "KE"),
            ("MOMO_MPESA_VALIDATION", "reject"),
            ("MOMO_MPESA_VALIDATION", "ACCEPT"),
            ("MOMO_BROKER_URL", "http://localhost:6379"),
            ("MOMO_BROKER_URL", "localhost:6379"),
            ("MOMO_MPESA_ALLOWED_IPS", "196.201.214.0/33"),
            ("MOMO_MPESA_ALLOWED_IPS", "196.201.214.0/24,safaricom.co.ke"),
            ("MOMO_TRUSTED_PROXY_HOPS", "-1"),
            ("MOMO_TRUSTED_PROXY_HOPS", "one"),
            ("MOMO_SWEEP_AFTER_SECONDS", "0"),
            ("MOMO_SWEEP_INTERVAL_SECONDS", "-5"),
            ("MOMO_BATCH_SIZE", "0"),
            ("MOMO_BATCH_SIZE", "1.5"),
            ("MOMO_DB_WRITE_TIMEOUT_SECONDS", "0"),
            ("MOMO_DB_STATEMENT_TIMEOUT_SECONDS", "soon"),
        ],
    )
    def test_a_bad_value_raises_config_error_naming_its_variable(
        self, variable: str, value: str
    ) -> None:
        with pytest.raises(ConfigError) as info:
            load_settings({variable: value})

        assert variable in str(info.value)

    def test_the_message_for_a_bad_cidr_shows_the_offending_part(self) -> None:
        with pytest.raises(ConfigError, match=re.escape("'10.0.0.0/99'")):
            load_settings({"MOMO_MPESA_ALLOWED_IPS": "196.201.214.0/24, 10.0.0.0/99"})

    def test_a_time_zone_region_without_a_city_raises_config_error(self) -> None:
        with pytest.raises(ConfigError, match="MOMO_TIMEZONE"):
            load_settings({"MOMO_TIMEZONE": "Africa"})

    @pytest.mark.parametrize("currency", ["ÄBC", "ßk"])
    def test_a_currency_that_is_not_three_ascii_letters_raises_config_error(
        self, currency: str
    ) -> None:
        with pytest.raises(ConfigError, match="MOMO_CURRENCY"):
            load_settings({"MOMO_CURRENCY": currency})


# --- the M-PESA path token ----------------------------------------------------------------


def example_path_token() -> str:
    """The value deploy/momo.env.example ships for MOMO_MPESA_PATH_TOKEN."""
    example = (ROOT / "deploy" / "momo.env.example").read_text()
    [value] = re.findall(r"^MOMO_MPESA_PATH_TOKEN=(.*)$", example, flags=re.MULTILINE)
    return value.strip()


class TestPathToken:
    def test_the_example_files_placeholder_is_refused_saying_how_to_make_a_token(self) -> None:
        with pytest.raises(ConfigError) as info:
            load_settings({"MOMO_MPESA_PATH_TOKEN": example_path_token()})

        message = str(info.value)
        assert "MOMO_MPESA_PATH_TOKEN" in message
        assert "placeholder" in message
        assert "openssl rand -hex 24" in message

    @pytest.mark.parametrize(
        "token",
        [
            "change-me",
            "changeme",
            "CHANGE_ME",
            "Change Me",
            "secret",
            "your-token",
            "change-me-change-me-change-me-change-me",
            "REPLACE-ME-with-32-random-characters-please",
        ],
    )
    def test_a_placeholder_is_refused_whatever_its_length_or_case(self, token: str) -> None:
        with pytest.raises(ConfigError, match="placeholder"):
            load_settings({"MOMO_MPESA_PATH_TOKEN": token})

    @pytest.mark.parametrize("length", [5, 12, 24, 31])
    def test_a_token_shorter_than_32_characters_is_refused_without_printing_it(
        self, length: int
    ) -> None:
        token = STRONG_TOKEN[:length]

        with pytest.raises(ConfigError) as info:
            load_settings({"MOMO_MPESA_PATH_TOKEN": token})

        message = str(info.value)
        assert f"is {length} characters long" in message
        assert "at least 32" in message
        assert "openssl rand -hex 24" in message
        assert token not in message.replace("MOMO_MPESA_PATH_TOKEN", "")

    @pytest.mark.parametrize(
        "token",
        [
            STRONG_TOKEN[:32],
            STRONG_TOKEN,
            "Zq3-Lw9_xT2vNc8RkP0mYb5HsJd7GfA4",  # secrets.token_urlsafe(24), as momo made them
            PATH_TOKEN,
        ],
    )
    def test_a_random_token_of_32_characters_or_more_is_taken(self, token: str) -> None:
        assert settings_of(load_settings({"MOMO_MPESA_PATH_TOKEN": token})).path_token == token

    @pytest.mark.parametrize(
        "token",
        [
            STRONG_TOKEN[:20] + "/" + STRONG_TOKEN[20:],
            STRONG_TOKEN[:20] + " " + STRONG_TOKEN[20:],
            STRONG_TOKEN[:20] + "%2F" + STRONG_TOKEN[20:],
            STRONG_TOKEN[:20] + "\u00e9" + STRONG_TOKEN[20:],
        ],
    )
    def test_a_token_a_url_path_would_change_is_refused(self, token: str) -> None:
        with pytest.raises(ConfigError, match="characters a URL path would change"):
            load_settings({"MOMO_MPESA_PATH_TOKEN": token})

    @pytest.mark.parametrize("token", ["a" * 40, "ab" * 20, "0123456" * 6])
    def test_a_long_token_of_few_different_characters_is_refused(self, token: str) -> None:
        with pytest.raises(ConfigError, match="not random"):
            load_settings({"MOMO_MPESA_PATH_TOKEN": token})


# --- Settings -----------------------------------------------------------------------------


class TestSettings:
    def test_require_path_token_names_the_variable_when_it_is_missing(self) -> None:
        with pytest.raises(ConfigError, match="MOMO_MPESA_PATH_TOKEN"):
            ADAPTERS["mpesa"].require_path_token(Settings())

    def test_require_path_token_returns_a_configured_token(self) -> None:
        settings = Settings(providers=mpesa_block(PATH_TOKEN))
        assert ADAPTERS["mpesa"].require_path_token(settings) == PATH_TOKEN

    def test_require_path_token_refuses_a_weak_token_set_in_code_too(self) -> None:
        with pytest.raises(ConfigError, match="at least 32"):
            ADAPTERS["mpesa"].require_path_token(Settings(providers=mpesa_block("abc")))

    def test_with_overrides_changes_a_copy_and_leaves_the_original(self) -> None:
        original = Settings()

        changed = original.with_overrides(trusted_proxy_hops=2)

        assert changed.trusted_proxy_hops == 2
        assert original.trusted_proxy_hops == 0

    def test_with_provider_changes_one_block_of_a_copy(self) -> None:
        original = Settings(providers={"acme": "acme's block", **mpesa_block(PATH_TOKEN)})

        changed = original.with_provider("mpesa", MpesaSettings(validation="accept"))

        assert settings_of(changed).path_token is None
        assert changed.providers["acme"] == "acme's block"
        assert settings_of(original).path_token == PATH_TOKEN

    def test_a_provider_without_a_block_reads_as_its_defaults(self) -> None:
        assert settings_of(Settings()) == MpesaSettings()

    def test_settings_are_frozen(self) -> None:
        with pytest.raises(AttributeError):
            Settings().currency = "UGX"  # type: ignore[misc]


# --- a production set-up on the embedded default's database -------------------------------


class TestTheEmbeddedDatabaseWithABroker:
    def test_a_broker_without_a_database_url_is_refused_naming_both(self) -> None:
        with pytest.raises(ConfigError) as info:
            load_settings({"MOMO_BROKER_URL": "redis://cache:6379/0"})

        message = str(info.value)
        assert "MOMO_DATABASE_URL is not set" in message
        assert "MOMO_BROKER_URL" in message
        assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in message

    def test_a_misspelt_database_url_is_named_as_the_likely_mistake(self) -> None:
        with pytest.raises(ConfigError, match=r"\(MOMO_DATABSE_URL is set: a misspelling\?\)"):
            load_settings(
                {
                    "MOMO_BROKER_URL": "redis://cache:6379/0",
                    "MOMO_DATABSE_URL": "postgresql://momo:pw@db/momo",
                }
            )

    def test_a_sqlite_url_given_explicitly_with_a_broker_is_taken(self) -> None:
        settings = load_settings(
            {"MOMO_BROKER_URL": "redis://cache:6379/0", "MOMO_DATABASE_URL": "sqlite:///momo.db"}
        )

        assert settings.is_sqlite
        assert not settings.is_embedded

    def test_without_a_broker_the_embedded_default_still_needs_no_variable(self) -> None:
        assert load_settings({}).database_url == "sqlite:///momo.db"


# --- MOMO_* variables momo does not read --------------------------------------------------


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which unknown names this process has already warned about."""
    import core.config

    monkeypatch.setattr(core.config, "_warned", set())


@pytest.mark.usefixtures("fresh_warnings")
class TestUnknownVariables:
    def test_a_misspelt_variable_is_logged_with_the_name_it_is_closest_to(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level("WARNING", logger="core.config"):
            load_settings({"MOMO_MPESA_ALLOWED_IP": "196.201.214.0/24"})

        [record] = caplog.records
        assert record.levelname == "WARNING"
        message = record.getMessage()
        assert "MOMO_MPESA_ALLOWED_IP is set but momo does not read it" in message
        assert "did you mean MOMO_MPESA_ALLOWED_IPS?" in message
        assert "196.201.214.0/24" not in message  # a value may be a secret

    def test_each_name_is_logged_once_however_often_settings_are_read(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        env = {"MOMO_DATABSE_URL": "postgresql://momo:pw@db/momo", "MOMO_COLOUR": "blue"}
        with caplog.at_level("WARNING", logger="core.config"):
            for _ in range(3):
                load_settings(env)

        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 2
        assert "MOMO_COLOUR is set" in messages[0]
        assert "did you mean" not in messages[0]
        assert "did you mean MOMO_DATABASE_URL?" in messages[1]

    def test_known_variables_and_the_test_suites_own_are_not_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        env = {name: "" for name in variables()}
        env.update(
            MOMO_TEST_REDIS_URL="redis://x",
            MOMO_BENCH_POSTGRES_URL="postgresql://x",
            MOMO_REQUIRE_SERVICES="1",
            MOMO_SAMPLES_DIR="/x",
            DATABASE_URL="postgresql://x",
        )
        with caplog.at_level("WARNING", logger="core.config"):
            load_settings(env)

        assert caplog.records == []

    def test_every_variable_read_is_in_readmes_configuration_table_and_no_other(self) -> None:
        readme = (ROOT / "README.md").read_text()
        table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
        rows = re.findall(r"^\| `(MOMO_[A-Z_]+)` \|", table, flags=re.MULTILINE)

        assert sorted(rows) == sorted(variables())

    def test_a_providers_variables_are_known_through_its_adapter(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        env = {"MOMO_MPESA_VALIDATION": "accept"}
        with caplog.at_level("WARNING", logger="core.config"):
            load_settings(env)
        assert caplog.records == []

        with caplog.at_level("WARNING", logger="core.config"):
            config.load_settings(env)  # no adapter: nobody reads it
        [record] = caplog.records
        assert "MOMO_MPESA_VALIDATION is set but momo does not read it" in record.getMessage()


# --- provider blocks ----------------------------------------------------------------------


class AcmeReader:
    """A provider's settings: one variable, read into a block of its own."""

    name = "acme"
    variables = ("MOMO_ACME_KEY",)

    def __init__(self) -> None:
        self.reads = 0

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> tuple[str, str]:
        self.reads += 1
        key = env.get("MOMO_ACME_KEY", "")
        if not key.isalnum():
            raise ConfigError(f"MOMO_ACME_KEY={key!r} is not letters and digits")
        return key, settings.currency


class TestProviderBlocks:
    def test_each_provider_reads_its_block_once_from_the_settings_read_so_far(self) -> None:
        acme = AcmeReader()

        settings = config.load_settings(
            {"MOMO_ACME_KEY": "k1", "MOMO_CURRENCY": "ugx"}, providers=[acme]
        )

        assert settings.providers == {"acme": ("k1", "UGX")}
        assert acme.reads == 1

    def test_a_bad_value_in_a_block_stops_the_load_naming_its_variable(self) -> None:
        with pytest.raises(ConfigError, match="MOMO_ACME_KEY"):
            config.load_settings({"MOMO_ACME_KEY": "k-1"}, providers=[AcmeReader()])

    def test_every_registered_provider_has_its_block_after_loading(self) -> None:
        assert set(load_settings({}).providers) == set(ADAPTERS)

    def test_the_variables_are_momos_own_and_every_providers(self) -> None:
        assert variables() == config.VARIABLES + tuple(
            name for adapter in ADAPTERS.values() for name in adapter.variables
        )
        assert set(ADAPTERS["mpesa"].variables) < set(variables())
        assert "MOMO_MPESA_PATH_TOKEN" not in config.VARIABLES


# --- passwords in messages ----------------------------------------------------------------


class TestHidePasswords:
    @pytest.mark.parametrize(
        ("text", "shown"),
        [
            (
                "postgresql+psycopg://postgres:S3cr%40t%3A%2F%25@127.0.0.1:5432/momo",
                "postgresql+psycopg://postgres:***@127.0.0.1:5432/momo",
            ),
            ("sentinel://:Sup3rS3cret@host:26379/0", "sentinel://:***@host:26379/0"),
            ("amqp://guest:gu@est@mq//", "amqp://guest:***@mq//"),
            (
                "redis://cache:6379/0?password=Sup3rS3cret&db=1",
                "redis://cache:6379/0?password=***&db=1",
            ),
            (
                "x='redis://u:a@h/0' and 'redis://v:b@k/1'",
                "x='redis://u:***@h/0' and 'redis://v:***@k/1'",
            ),
            ("postgresql://momo@db/momo", "postgresql://momo@db/momo"),
            ("sqlite:////var/lib/momo/momo.db", "sqlite:////var/lib/momo/momo.db"),
            ("give postgresql://USER:PASSWORD@HOST/DB", "give postgresql://USER:PASSWORD@HOST/DB"),
        ],
    )
    def test_the_password_of_every_url_is_masked_and_nothing_else_changes(
        self, text: str, shown: str
    ) -> None:
        assert hide_passwords(text) == shown

    def test_a_wrongly_schemed_broker_url_is_named_without_its_password(self) -> None:
        with pytest.raises(ConfigError) as info:
            load_settings({"MOMO_BROKER_URL": "sentinel://:Sup3rS3cret@sentinel1:26379/0"})

        message = str(info.value)
        assert "MOMO_BROKER_URL='sentinel://:***@sentinel1:26379/0' is not a redis://" in message
        assert "Sup3rS3cret" not in message

    def test_no_config_error_can_carry_a_url_password(self) -> None:
        error = ConfigError("MOMO_X='amqp://momo:Sup3rS3cret@mq//' is wrong")

        assert "Sup3rS3cret" not in str(error)
        assert "amqp://momo:***@mq//" in str(error)
