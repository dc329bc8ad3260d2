"""Registering the C2B URLs with Daraja: refused before any call when Daraja would refuse
them, and otherwise registered with the fake Daraja on loopback, its answer read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.config import ConfigError, Settings
from ingest.providers.daraja import DarajaApp
from ingest.providers.mpesa import MpesaSettings
from ingest.providers.mpesa_register import (
    REGISTER_PATH,
    C2BUrls,
    NotRegistrable,
    c2b_urls,
    register_urls,
)
from ingest.providers.outbound import NoAnswer, ProviderRefused
from tests.fakes import DarajaFake, Reply
from tests.fakes.daraja import CONSUMER_KEY, CONSUMER_SECRET, REGISTER, SHORTCODE

TOKEN = "3f9a1c0e5b7d2e8f4a6c1b9d0e7f2a5c8b3d6e1f4a7c0b9d"
PUBLIC = "https://pay.example.com"


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def production() -> Iterator[DarajaFake]:
    """A fake with production's rules: https URLs only, registered once."""
    with DarajaFake(sandbox=False) as fake:
        yield fake
    assert fake.errors == []


def app_at(api_base: str) -> DarajaApp:
    return DarajaApp(CONSUMER_KEY, CONSUMER_SECRET, SHORTCODE, api_base=api_base)


def settings_for(
    api_base: str, public_url: str | None = PUBLIC, token: str = TOKEN, app: bool = True
) -> Settings:
    block = MpesaSettings(path_token=token, app=app_at(api_base) if app else None)
    return Settings(public_url=public_url, providers={"mpesa": block})


# --- the URLs -------------------------------------------------------------------------------


def test_the_urls_are_the_public_address_and_the_c2b_paths_under_the_token() -> None:
    _app, urls = c2b_urls(settings_for("https://sandbox.safaricom.co.ke"), TOKEN)
    assert urls == C2BUrls(
        confirmation=f"{PUBLIC}/webhooks/daraja/{TOKEN}/c2b/confirmation",
        validation=f"{PUBLIC}/webhooks/daraja/{TOKEN}/c2b/validation",
    )
    assert urls.masked(TOKEN).confirmation == f"{PUBLIC}/webhooks/daraja/***/c2b/confirmation"


def test_a_public_url_with_a_path_keeps_it() -> None:
    _app, urls = c2b_urls(
        settings_for("https://sandbox.safaricom.co.ke", "https://example.com/pay"), TOKEN
    )
    assert urls.validation == f"https://example.com/pay/webhooks/daraja/{TOKEN}/c2b/validation"


def test_without_a_public_url_or_an_app_every_missing_variable_is_named() -> None:
    settings = settings_for("https://sandbox.safaricom.co.ke", public_url=None, app=False)
    with pytest.raises(ConfigError) as raised:
        c2b_urls(settings, TOKEN)
    for name in (
        "MOMO_PUBLIC_URL",
        "MOMO_MPESA_CONSUMER_KEY",
        "MOMO_MPESA_CONSUMER_SECRET",
        "MOMO_MPESA_SHORTCODE",
    ):
        assert name in str(raised.value)


# --- refused before calling -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("public_url", "token", "word", "advice"),
    [
        ("https://mpesa.example.com", TOKEN, "mpesa", "another host name"),
        ("https://pay.SAFARICOM-partner.co.ke", TOKEN, "safaricom", "another host name"),
        ("https://example.com/sql-gateway", TOKEN, "sql", "serve momo under a path"),
        (PUBLIC, "exec" + TOKEN[4:], "exec", "MOMO_MPESA_PATH_TOKEN"),
        (PUBLIC, "a1b2c3Query" + TOKEN[11:], "query", "MOMO_MPESA_PATH_TOKEN"),
    ],
)
def test_a_url_holding_a_word_daraja_refuses_is_refused_before_any_call(
    daraja: DarajaFake, public_url: str, token: str, word: str, advice: str
) -> None:
    with pytest.raises(NotRegistrable) as raised:
        register_urls(settings_for(daraja.base_url, public_url, token), token)
    message = raised.value.message
    assert raised.value.reason == "refused_word"
    assert repr(word) in message
    assert advice in message
    assert "nothing was sent to Daraja" in message
    assert token not in message  # the path token is a secret, even in an error
    assert daraja.requests == []  # not even a token was asked for
    assert daraja.confirmation_url is None


def test_plain_http_is_refused_before_any_call_against_the_live_api() -> None:
    # the live API is never reached: nothing listens for it here, and nothing is sent
    settings = settings_for("https://api.safaricom.co.ke", "http://pay.example.com")
    with pytest.raises(NotRegistrable) as raised:
        register_urls(settings, TOKEN)
    assert raised.value.reason == "not_https"
    assert "https" in raised.value.message
    assert "MOMO_PUBLIC_URL" in raised.value.message
    assert TOKEN not in raised.value.message


def test_only_the_live_api_counts_as_live() -> None:
    assert app_at("https://api.safaricom.co.ke").live
    assert app_at("https://API.safaricom.co.ke/").live
    assert not app_at("https://sandbox.safaricom.co.ke").live
    assert not app_at("http://127.0.0.1:8080").live


# --- registered -----------------------------------------------------------------------------


def test_the_sandbox_registers_both_urls_and_payments_are_confirmed_there(
    daraja: DarajaFake,
) -> None:
    public = "http://203.0.113.7:8000"  # plain http: the sandbox takes it
    registered = register_urls(settings_for(daraja.base_url, public), TOKEN)

    (call,) = daraja.calls(REGISTER)
    assert call.path == REGISTER_PATH
    assert call.json == {
        "ShortCode": SHORTCODE,
        "ResponseType": "Completed",
        "ConfirmationURL": f"{public}/webhooks/daraja/{TOKEN}/c2b/confirmation",
        "ValidationURL": f"{public}/webhooks/daraja/{TOKEN}/c2b/validation",
    }
    assert daraja.confirmation_url == call.json["ConfirmationURL"]
    assert daraja.validation_url == call.json["ValidationURL"]
    assert registered.description == "Success"
    assert registered.conversation_id


def test_cancelled_is_sent_as_the_response_type(daraja: DarajaFake) -> None:
    register_urls(settings_for(daraja.base_url), TOKEN, "Cancelled")
    assert daraja.response_type == "Cancelled"


def test_a_response_type_daraja_does_not_take_is_refused_before_any_call(
    daraja: DarajaFake,
) -> None:
    with pytest.raises(ValueError, match="completed"):
        register_urls(settings_for(daraja.base_url), TOKEN, "completed")
    assert daraja.requests == []


def test_registering_again_in_the_sandbox_overwrites(daraja: DarajaFake) -> None:
    register_urls(settings_for(daraja.base_url), TOKEN)
    other = "https://billing.example.com"
    register_urls(settings_for(daraja.base_url, other), TOKEN)
    assert daraja.confirmation_url == f"{other}/webhooks/daraja/{TOKEN}/c2b/confirmation"


# --- Daraja refuses -------------------------------------------------------------------------


def test_urls_already_registered_in_production_are_refused_in_darajas_words_saying_what_to_do(
    production: DarajaFake,
) -> None:
    register_urls(settings_for(production.base_url), TOKEN)
    with pytest.raises(ProviderRefused) as raised:
        register_urls(settings_for(production.base_url, "https://billing.example.com"), TOKEN)
    message = raised.value.message
    assert "Urls are already registered." in message
    assert "500.003.1001" in message
    assert "URL management" in message
    assert len(production.calls(REGISTER)) == 2  # not retried: a refusal, not an outage
    assert production.confirmation_url == f"{PUBLIC}/webhooks/daraja/{TOKEN}/c2b/confirmation"


def test_a_url_daraja_itself_refuses_is_shown_in_its_words(production: DarajaFake) -> None:
    # the fake keeps production's rules although momo cannot know its base is live
    with pytest.raises(ProviderRefused) as raised:
        register_urls(settings_for(production.base_url, "http://pay.example.com"), TOKEN)
    assert "Bad Request - Invalid ConfirmationURL" in raised.value.message
    assert raised.value.reason == "400.003.02"
    assert TOKEN not in raised.value.message
    assert production.confirmation_url is None


def test_an_answer_with_another_response_code_is_a_refusal(daraja: DarajaFake) -> None:
    daraja.refuse_next(
        REGISTER,
        Reply(
            200,
            {
                "OriginatorCoversationID": "7619-37765134-1",
                "ResponseCode": "1",
                "ResponseDescription": "Invalid ShortCode",
            },
        ),
    )
    with pytest.raises(ProviderRefused) as raised:
        register_urls(settings_for(daraja.base_url), TOKEN)
    assert "Invalid ShortCode" in raised.value.message
    assert raised.value.reason == "1"


def test_an_answer_without_a_response_code_is_no_answer(daraja: DarajaFake) -> None:
    daraja.malformed_next(REGISTER, "missing_fields")
    with pytest.raises(NoAnswer):
        register_urls(settings_for(daraja.base_url), TOKEN)


@pytest.mark.parametrize(
    ("status", "code"), [(404, "404.001.03"), (400, "400.003.01")], ids=["404", "c2b-400"]
)
def test_a_token_daraja_calls_invalid_is_fetched_again_and_the_registration_made(
    daraja: DarajaFake, status: int, code: str
) -> None:
    daraja.refuse_next(
        REGISTER,
        Reply(
            status,
            {"requestId": "1-2-3", "errorCode": code, "errorMessage": "Invalid Access Token"},
        ),
    )
    register_urls(settings_for(daraja.base_url), TOKEN)
    assert len(daraja.calls(REGISTER)) == 2
    assert daraja.confirmation_url == f"{PUBLIC}/webhooks/daraja/{TOKEN}/c2b/confirmation"
