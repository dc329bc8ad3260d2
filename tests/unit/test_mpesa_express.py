"""The M-PESA Express client against a fake Daraja on loopback."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from core.config import ConfigError, Settings
from core.providers import ParseContext
from ingest.providers import mpesa
from ingest.providers.mpesa import MpesaAdapter, read_settings
from ingest.providers.mpesa_express import Express, ExpressSettings, password, timestamp
from ingest.providers.outbound import (
    Ask,
    NoAnswer,
    ProviderRefused,
    ProviderUnavailable,
    Timeouts,
)
from matcher.notifications import PaymentNotification
from tests.fakes import HELD, PAY, QUERY, TOKEN, DarajaFake, StkResult
from tests.fakes.base import to_json
from tests.fakes.daraja import CONSUMER_KEY, CONSUMER_SECRET, PASSKEY, SHORTCODE


@pytest.fixture
def daraja() -> Iterator[DarajaFake]:
    with DarajaFake() as fake:
        yield fake
    assert fake.errors == []


def express(fake: DarajaFake, **changes: object) -> Express:
    settings = ExpressSettings(
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        shortcode=SHORTCODE,
        passkey=PASSKEY,
        api_base=fake.base_url,
    )
    return Express(settings, timeouts=Timeouts(connect=1.0, read=1.0), **changes)  # type: ignore[arg-type]


ASK = Ask(
    request_id=7,
    phone="+254712345678",
    amount=150000,
    currency="KES",
    account_number="HOTSPOT-ACC-000123",
    callback_url="http://127.0.0.1:9/webhooks/mpesa/token/stk",
)


def test_the_password_is_shortcode_passkey_and_nairobi_time() -> None:
    when = datetime(2026, 12, 1, 21, 30, 5, tzinfo=UTC)
    assert timestamp(when) == "20261202003005"  # Nairobi is UTC+3
    decoded = base64.b64decode(password("174379", "key", "20261202003005")).decode()
    assert decoded == "174379key20261202003005"


def test_a_push_is_signed_shaped_and_taken(daraja: DarajaFake) -> None:
    daraja.will(StkResult(callback=HELD))
    asked = express(daraja).push(ASK)
    (push,) = daraja.calls(PAY)
    body = push.json
    assert body["PhoneNumber"] == body["PartyA"] == "254712345678"
    assert body["Amount"] == 1500
    assert body["AccountReference"] == "HOTSPOT-ACC-"  # Daraja's 12 characters
    assert len(body["TransactionDesc"]) <= 13
    assert body["CallBackURL"] == ASK.callback_url
    assert asked.reference in daraja.transactions
    assert asked.merchant_reference


def test_cents_are_refused_before_daraja_is_asked(daraja: DarajaFake) -> None:
    with pytest.raises(ProviderRefused) as raised:
        express(daraja).push(Ask(**{**ASK.__dict__, "amount": 150050}))
    assert "whole shillings" in raised.value.message
    assert daraja.calls(PAY) == []


def test_a_token_is_fetched_once_and_again_when_daraja_stops_taking_it(
    daraja: DarajaFake,
) -> None:
    daraja.will(*[StkResult(callback=HELD)] * 3)
    client = express(daraja)
    client.push(ASK)
    client.push(ASK)
    assert len(daraja.calls(TOKEN)) == 1
    daraja.expire_tokens()  # Daraja answers 404.001.03 Invalid Access Token
    client.push(ASK)
    assert len(daraja.calls(TOKEN)) == 2
    assert len(daraja.calls(PAY)) == 4  # the refused one, then the same push once more
    assert len(daraja.transactions) == 3


def test_a_5xx_then_success_pushes_once(daraja: DarajaFake) -> None:
    daraja.will(StkResult(callback=HELD))
    daraja.fail_next(PAY, times=2, status=503)
    asked = express(daraja).push(ASK)
    assert len(daraja.calls(PAY)) == 3
    assert list(daraja.transactions) == [asked.reference]


def test_a_push_that_is_not_answered_is_never_sent_again(daraja: DarajaFake) -> None:
    daraja.will(StkResult(callback=HELD))
    daraja.hang_next(PAY, seconds=3)
    with pytest.raises(NoAnswer):
        express(daraja).push(ASK)
    assert len(daraja.calls(PAY)) == 1
    assert len(daraja.transactions) == 1  # Daraja took it: its callback will say


@pytest.mark.parametrize("shape", ["not_json", "empty", "missing_fields"])
def test_a_malformed_answer_to_a_push_is_no_answer(daraja: DarajaFake, shape: str) -> None:
    daraja.will(StkResult(callback=HELD))
    daraja.malformed_next(PAY, shape)
    with pytest.raises(NoAnswer):
        express(daraja).push(ASK)
    assert len(daraja.calls(PAY)) == 1


def test_a_refusal_carries_darajas_words(daraja: DarajaFake) -> None:
    daraja.refuse_next(PAY, "invalid_phone")
    with pytest.raises(ProviderRefused) as raised:
        express(daraja).push(ASK)
    assert raised.value.status == 400
    assert raised.value.reason == "400.002.02"
    assert "Invalid" in raised.value.message


def test_wrong_keys_are_named(daraja: DarajaFake) -> None:
    settings = ExpressSettings(
        consumer_key="wrong",
        consumer_secret="wrong-too",
        shortcode=SHORTCODE,
        passkey=PASSKEY,
        api_base=daraja.base_url,
    )
    with pytest.raises(ProviderRefused) as raised:
        Express(settings).push(ASK)
    assert "MOMO_MPESA_CONSUMER_KEY" in raised.value.message
    assert "wrong-too" not in str(raised.value)


def test_the_query_says_pending_then_how_it_went(daraja: DarajaFake) -> None:
    daraja.default_outcome = None  # the customer has not answered yet
    client = express(daraja)
    asked = client.push(ASK)
    with pytest.raises(ProviderUnavailable):
        client.query(asked.reference)  # "The transaction is being processed"
    assert len(daraja.calls(QUERY)) == 1  # not asked again at once
    daraja.decide(asked.reference, StkResult(code=1032, callback=HELD))
    result = client.query(asked.reference)
    assert (result.state, result.result_code) == ("cancelled", "1032")
    asked = client.push(ASK)
    daraja.decide(asked.reference, StkResult(callback=HELD))
    assert client.query(asked.reference).state == "paid"
    asked = client.push(ASK)
    daraja.decide(asked.reference, StkResult(code=1037, callback=HELD))
    assert client.query(asked.reference).state == "failed"


def test_the_fakes_callback_is_the_adapters_shape(daraja: DarajaFake) -> None:
    daraja.will(StkResult(callback=HELD, receipt="TKZ1234567"))
    asked = express(daraja).push(ASK)
    body = daraja.callback_body(daraja.transactions[asked.reference])
    parsed = MpesaAdapter().parse("stk", to_json(body), ParseContext())
    assert isinstance(parsed, PaymentNotification)
    assert parsed.request_reference == asked.reference
    assert (parsed.code, parsed.amount, parsed.msisdn.e164) == (
        "TKZ1234567",
        150000,
        "+254712345678",
    )


class TestTheDarajaAppSettings:
    """The app (key, secret, shortcode) is enough to talk to Daraja; the passkey adds
    M-PESA Express."""

    APP = {
        "MOMO_MPESA_CONSUMER_KEY": CONSUMER_KEY,
        "MOMO_MPESA_CONSUMER_SECRET": CONSUMER_SECRET,
        "MOMO_MPESA_SHORTCODE": SHORTCODE,
    }

    def test_an_app_without_a_passkey_talks_to_daraja_but_asks_nobody_to_pay(self) -> None:
        block = read_settings(self.APP)
        assert block.app is not None and block.app.shortcode == SHORTCODE
        assert block.app.sandbox
        assert block.express is None

    def test_with_the_passkey_express_uses_the_same_app(self) -> None:
        block = read_settings({**self.APP, "MOMO_MPESA_PASSKEY": PASSKEY})
        assert block.express is not None and block.express.app == block.app

    def test_a_passkey_without_the_app_is_refused_naming_what_is_missing(self) -> None:
        with pytest.raises(ConfigError) as raised:
            read_settings({"MOMO_MPESA_PASSKEY": PASSKEY})
        for name in self.APP:
            assert name in str(raised.value)

    def test_half_an_app_is_refused_naming_what_is_missing(self) -> None:
        with pytest.raises(ConfigError) as raised:
            read_settings({"MOMO_MPESA_CONSUMER_KEY": CONSUMER_KEY})
        assert "MOMO_MPESA_SHORTCODE" in str(raised.value)
        assert CONSUMER_KEY not in str(raised.value)

    def test_a_live_api_base_is_not_the_sandbox(self) -> None:
        block = read_settings({**self.APP, "MOMO_MPESA_API_BASE": "https://api.safaricom.co.ke/"})
        assert block.app is not None and not block.app.sandbox

    def test_every_call_of_one_app_shares_one_client_and_token(self) -> None:
        settings = Settings(
            providers={"mpesa": read_settings({**self.APP, "MOMO_MPESA_PASSKEY": PASSKEY})}
        )
        assert mpesa.daraja(settings) is mpesa.daraja(settings)
        assert mpesa._express(settings).daraja is mpesa.daraja(settings)
