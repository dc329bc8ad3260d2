"""MTN MoMo collection: its settings block, its request-to-pay client against a fake MTN
on loopback, its unsigned callback, and MTN as an optional provider."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from core.config import ConfigError, Settings
from core.providers import ParseContext
from ingest.app import require_path_tokens
from ingest.asking import choose_provider
from ingest.providers import ADAPTERS, load_settings, requesters
from ingest.providers.mpesa import MpesaSettings
from ingest.providers.mtn import (
    CALLBACK,
    SANDBOX,
    Collection,
    MtnAdapter,
    MtnSettings,
    amount_text,
    settings_of,
)
from ingest.providers.outbound import (
    Ask,
    NoAnswer,
    ProviderRefused,
    ProviderUnavailable,
    Timeouts,
)
from matcher.errors import InvalidInput
from matcher.models import INBOX_PENDING, INBOX_REJECTED, InboxItem
from matcher.notifications import InvalidCallback, RequestResult
from momo.app import create_app
from tests.conftest import PATH_TOKEN
from tests.fakes import HELD, PAY, QUERY, TOKEN, MtnFake, MtnResult, Reply
from tests.fakes.base import basic_auth, to_json
from tests.fakes.mtn import API_KEY, API_USER, SUBSCRIPTION_KEY
from tests.unit.test_cli import database_url, env, serve  # noqa: F401 (fixtures)

MTN_TOKEN = "mtn-path-token-0123456789abcdefghijkl"
ADAPTER = MtnAdapter()
CTX = ParseContext(currency="EUR", region="KE")
CREDENTIALS = {
    "MOMO_MTN_SUBSCRIPTION_KEY": SUBSCRIPTION_KEY,
    "MOMO_MTN_API_USER": API_USER,
    "MOMO_MTN_API_KEY": API_KEY,
}


@pytest.fixture
def mtn() -> Iterator[MtnFake]:
    with MtnFake() as fake:
        fake.default_outcome = MtnResult(callback=HELD)  # the test delivers callbacks
        yield fake
    assert fake.errors == []


def block(fake: MtnFake, **changes: Any) -> MtnSettings:
    fields: dict[str, Any] = dict(
        path_token=MTN_TOKEN,
        subscription_key=SUBSCRIPTION_KEY,
        api_user=API_USER,
        api_key=API_KEY,
        api_base=fake.base_url,
        timeouts=Timeouts(connect=1.0, read=0.5),
    )
    fields.update(changes)
    return MtnSettings(**fields)


def collection(fake: MtnFake, **changes: Any) -> Collection:
    return Collection(block(fake, **changes))


def an_ask(reference: str | None = None, **changes: Any) -> Ask:
    fields: dict[str, Any] = dict(
        request_id=7,
        phone="+256772123456",
        amount=150000,
        currency="EUR",
        account_number="HOTSPOT-ACC-000123",
        reference=reference or str(uuid.uuid4()),
        callback_url=f"http://127.0.0.1:9/webhooks/mtn/{MTN_TOKEN}/callback",
    )
    fields.update(changes)
    return Ask(**fields)


# --- settings -----------------------------------------------------------------------------


class TestSettings:
    def test_unset_mtn_is_off_and_reads_as_the_sandbox_defaults(self) -> None:
        mtn = settings_of(load_settings({}))
        assert mtn == MtnSettings()
        assert (mtn.path_token, mtn.can_ask) == (None, False)
        assert (mtn.api_base, mtn.target_environment, mtn.currency) == (SANDBOX, "sandbox", "EUR")
        assert SANDBOX == "https://sandbox.momodeveloper.mtn.com"

    def test_every_variable_is_read(self) -> None:
        mtn = settings_of(
            load_settings(
                {
                    **CREDENTIALS,
                    "MOMO_MTN_PATH_TOKEN": MTN_TOKEN,
                    "MOMO_MTN_API_BASE": "https://proxy.momoapi.mtn.com/",
                    "MOMO_MTN_TARGET_ENVIRONMENT": "mtnuganda",
                    "MOMO_MTN_CURRENCY": "ugx",
                }
            )
        )
        assert mtn.path_token == MTN_TOKEN
        assert (mtn.subscription_key, mtn.api_user, mtn.api_key) == (
            SUBSCRIPTION_KEY,
            API_USER,
            API_KEY,
        )
        assert mtn.api_base == "https://proxy.momoapi.mtn.com"
        assert (mtn.target_environment, mtn.currency) == ("mtnuganda", "UGX")

    def test_the_variables_are_the_issues_names(self) -> None:
        assert set(ADAPTER.variables) == {
            "MOMO_MTN_API_BASE",
            "MOMO_MTN_SUBSCRIPTION_KEY",
            "MOMO_MTN_API_USER",
            "MOMO_MTN_API_KEY",
            "MOMO_MTN_TARGET_ENVIRONMENT",
            "MOMO_MTN_CURRENCY",
            "MOMO_MTN_PATH_TOKEN",
        }

    @pytest.mark.parametrize(
        ("given", "named"),
        [
            ({"MOMO_MTN_API_USER": API_USER}, "MOMO_MTN_SUBSCRIPTION_KEY, MOMO_MTN_API_KEY"),
            ({**CREDENTIALS, "MOMO_MTN_API_USER": "alice"}, "MOMO_MTN_API_USER"),
            ({"MOMO_MTN_API_BASE": "sandbox.momodeveloper.mtn.com"}, "MOMO_MTN_API_BASE"),
            ({"MOMO_MTN_TARGET_ENVIRONMENT": "MTN Uganda"}, "MOMO_MTN_TARGET_ENVIRONMENT"),
            ({"MOMO_MTN_CURRENCY": "euro"}, "MOMO_MTN_CURRENCY"),
            ({"MOMO_MTN_PATH_TOKEN": "change-me"}, "MOMO_MTN_PATH_TOKEN"),
        ],
    )
    def test_a_wrong_value_is_named(self, given: dict[str, str], named: str) -> None:
        with pytest.raises(ConfigError, match=named) as caught:
            load_settings(given)
        assert API_KEY not in str(caught.value) and SUBSCRIPTION_KEY not in str(caught.value)

    def test_the_missing_variables_are_named_before_anyone_is_asked(self) -> None:
        settings = load_settings({})
        assert ADAPTER.requests_missing(settings) == [
            "MOMO_MTN_SUBSCRIPTION_KEY",
            "MOMO_MTN_API_USER",
            "MOMO_MTN_API_KEY",
            "MOMO_MTN_PATH_TOKEN",
        ]
        ready = load_settings({**CREDENTIALS, "MOMO_MTN_PATH_TOKEN": MTN_TOKEN})
        assert ADAPTER.requests_missing(ready) == []


# --- MTN as an optional provider ------------------------------------------------------------


class TestOptional:
    def test_a_web_process_starts_without_mtn(self, tmp_path: Path) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'momo.db'}",
            providers={"mpesa": MpesaSettings(path_token=PATH_TOKEN), "mtn": MtnSettings()},
            instance_path=tmp_path / "instance",
        )
        require_path_tokens(settings, ADAPTERS)  # raises nothing
        app = create_app(settings)
        try:
            client = app.test_client()
            for method in ("PUT", "POST"):
                answer = client.open(f"/webhooks/mtn/{MTN_TOKEN}/callback", method=method)
                assert answer.status_code == 404
        finally:
            app.extensions["momo"].close()

    def test_mpesa_is_still_required(self) -> None:
        settings = load_settings({"MOMO_MTN_PATH_TOKEN": MTN_TOKEN})
        with pytest.raises(ConfigError, match="MOMO_MPESA_PATH_TOKEN"):
            require_path_tokens(settings, ADAPTERS)

    def test_serve_neither_shows_nor_makes_an_mtn_token_when_mtn_is_off(
        self,
        serve: Any,  # noqa: F811 (the imported fixture)
        tmp_path: Path,
    ) -> None:
        result = serve()
        assert result.exit_code == 0, result.output
        assert "M-PESA callback URLs" in result.output
        assert "MTN" not in result.output and "/webhooks/mtn/" not in result.output
        assert not (tmp_path / "instance" / "mtn_path_token").exists()

    def test_serve_shows_the_mtn_url_when_mtn_is_on(
        self,
        serve: Any,  # noqa: F811 (the imported fixture)
    ) -> None:
        result = serve(MOMO_MTN_PATH_TOKEN=MTN_TOKEN)
        assert result.exit_code == 0, result.output
        assert "MTN MoMo callback URLs" in result.output
        assert "http://127.0.0.1:8123/webhooks/mtn/<path token>/callback" in result.output
        assert MTN_TOKEN not in result.output


# --- the client ---------------------------------------------------------------------------


def test_a_request_to_pay_is_shaped_and_taken_under_our_reference(mtn: MtnFake) -> None:
    ask = an_ask()
    asked = collection(mtn).request_to_pay(ask, ask.callback_url)
    assert asked.reference == ask.reference
    (token,) = mtn.calls(TOKEN)
    assert basic_auth(token) == (API_USER, API_KEY)
    assert token.headers["Ocp-Apim-Subscription-Key"] == SUBSCRIPTION_KEY
    (pay,) = mtn.calls(PAY)
    assert pay.headers["X-Reference-Id"] == ask.reference
    assert pay.headers["X-Callback-Url"] == ask.callback_url
    assert pay.headers["X-Target-Environment"] == "sandbox"
    assert pay.headers["Ocp-Apim-Subscription-Key"] == SUBSCRIPTION_KEY
    assert pay.headers["Authorization"].startswith("Bearer ")
    assert pay.json["externalId"] == ask.reference  # what the callback carries back
    assert pay.json["payer"] == {"partyIdType": "MSISDN", "partyId": "256772123456"}
    assert (pay.json["amount"], pay.json["currency"]) == ("1500", "EUR")
    assert ask.reference in mtn.transactions


@pytest.mark.parametrize(("minor", "text"), [(150000, "1500"), (150050, "1500.50"), (5, "0.05")])
def test_amounts_are_decimal_strings(minor: int, text: str) -> None:
    assert amount_text(minor) == text


def test_a_currency_other_than_mtns_is_refused_before_mtn_is_asked(mtn: MtnFake) -> None:
    ask = an_ask(currency="KES")
    with pytest.raises(ProviderRefused) as caught:
        collection(mtn).request_to_pay(ask, None)
    assert caught.value.reason == "currency_mismatch" and caught.value.status == 422
    assert "MOMO_MTN_CURRENCY" in caught.value.message
    assert mtn.calls(PAY) == []


def test_a_token_is_fetched_once_and_again_when_it_expires_mid_run(mtn: MtnFake) -> None:
    client = collection(mtn)
    for _ in range(3):
        client.request_to_pay(an_ask(), None)
    assert len(mtn.calls(TOKEN)) == 1
    mtn.expire_tokens()
    client.request_to_pay(an_ask(), None)
    client.status(next(iter(mtn.transactions)))
    assert len(mtn.calls(TOKEN)) == 2
    assert len(mtn.transactions) == 4


def test_a_5xx_then_success_asks_once(mtn: MtnFake) -> None:
    mtn.fail_next(PAY, times=2, status=503)
    ask = an_ask()
    collection(mtn).request_to_pay(ask, None)
    assert len(mtn.calls(PAY)) == 3
    assert list(mtn.transactions) == [ask.reference]


def test_a_5xx_after_mtn_took_it_is_asked_about_never_made_twice(mtn: MtnFake) -> None:
    mtn.fail_next(PAY, status=500, taken=True)
    ask = an_ask()
    with pytest.raises(NoAnswer, match="asked about instead"):
        collection(mtn).request_to_pay(ask, None)
    # the retry carried the same X-Reference-Id: MTN answered 409 and kept one request
    assert [c.headers["X-Reference-Id"] for c in mtn.calls(PAY)] == [ask.reference] * 2
    assert list(mtn.transactions) == [ask.reference]


def test_an_outage_is_unavailable_and_nothing_was_taken(mtn: MtnFake) -> None:
    mtn.fail_next(PAY, times=10, status=503)
    with pytest.raises(ProviderUnavailable):
        collection(mtn).request_to_pay(an_ask(), None)
    assert mtn.transactions == {}


def test_a_request_to_pay_not_answered_is_asked_about_and_never_sent_again(mtn: MtnFake) -> None:
    mtn.hang_next(PAY, seconds=2)
    ask = an_ask()
    client = collection(mtn)
    with pytest.raises(NoAnswer):
        client.request_to_pay(ask, None)
    assert len(mtn.calls(PAY)) == 1
    assert client.status(ask.reference or "").state == "paid"  # MTN took it all the same
    assert len(mtn.calls(PAY)) == 1


@pytest.mark.parametrize("shape", ["not_json", "empty"])
def test_a_malformed_answer_to_a_request_to_pay_is_no_answer(mtn: MtnFake, shape: str) -> None:
    mtn.malformed_next(PAY, shape)
    with pytest.raises(NoAnswer, match="not 202"):
        collection(mtn).request_to_pay(an_ask(), None)
    assert len(mtn.transactions) == 1


@pytest.mark.parametrize("shape", ["not_json", "empty", "missing_fields"])
def test_a_malformed_status_is_no_answer(mtn: MtnFake, shape: str) -> None:
    ask = an_ask()
    client = collection(mtn)
    client.request_to_pay(ask, None)
    mtn.malformed_next(QUERY, shape)
    with pytest.raises(NoAnswer):
        client.status(ask.reference or "")


def test_a_token_answer_without_a_token_is_no_answer(mtn: MtnFake) -> None:
    mtn.malformed_next(TOKEN, "missing_fields")
    with pytest.raises(NoAnswer, match="access_token"):
        collection(mtn).request_to_pay(an_ask(), None)
    assert mtn.calls(PAY) == []


def test_a_reused_reference_is_409_and_asked_about(mtn: MtnFake) -> None:
    ask = an_ask()
    client = collection(mtn)
    client.request_to_pay(ask, None)
    with pytest.raises(NoAnswer, match="already has"):
        client.request_to_pay(ask, None)
    assert len(mtn.transactions) == 1


@pytest.mark.parametrize(
    ("refusal", "status", "reason"),
    [
        ("payer_not_found", 404, "PAYER_NOT_FOUND"),
        ("payer_limit_reached", 400, "PAYER_LIMIT_REACHED"),
        ("not_allowed", 403, "NOT_ALLOWED"),
    ],
)
def test_a_refusal_carries_mtns_words(mtn: MtnFake, refusal: str, status: int, reason: str) -> None:
    mtn.refuse_next(PAY, refusal)
    with pytest.raises(ProviderRefused) as caught:
        collection(mtn).request_to_pay(an_ask(), None)
    assert (caught.value.status, caught.value.reason) == (status, reason)
    assert caught.value.message.endswith(".")  # MTN's message, as it wrote it


def test_wrong_credentials_are_named_and_never_shown(mtn: MtnFake) -> None:
    for wrong in (dict(api_key="not-the-key"), dict(subscription_key="not-the-key")):
        with pytest.raises(ProviderRefused) as caught:
            collection(mtn, **wrong).request_to_pay(an_ask(), None)
        assert caught.value.reason == "credentials_refused"
        assert "MOMO_MTN_API_KEY" in caught.value.message
        assert "not-the-key" not in caught.value.message
    assert mtn.calls(PAY) == []


def test_the_status_is_pending_then_how_it_went(mtn: MtnFake) -> None:
    mtn.default_outcome = None
    ask = an_ask()
    client = collection(mtn)
    client.request_to_pay(ask, None)
    reference = ask.reference or ""
    assert client.status(reference).state == "pending"
    mtn.decide(reference, MtnResult(callback=HELD, financial_transaction_id="2041375872"))
    result = client.status(reference)
    assert (result.state, result.code, result.amount, result.verified) == (
        "paid",
        "2041375872",
        150000,
        True,
    )
    assert result.msisdn is not None and result.msisdn.e164 == "+256772123456"


def test_an_unknown_reference_is_refused_and_so_left_pending(mtn: MtnFake) -> None:
    with pytest.raises(ProviderRefused) as caught:
        collection(mtn).status(str(uuid.uuid4()))
    assert caught.value.reason == "RESOURCE_NOT_FOUND"


def test_an_unknown_status_word_is_no_answer(mtn: MtnFake) -> None:
    ask = an_ask()
    client = collection(mtn)
    client.request_to_pay(ask, None)
    mtn.refuse_next(QUERY, Reply(200, {"externalId": ask.reference, "status": "ONGOING"}))
    with pytest.raises(NoAnswer, match="ONGOING"):
        client.status(ask.reference or "")


# --- the callback -------------------------------------------------------------------------


def callback(status: str = "SUCCESSFUL", **fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "financialTransactionId": "2041375872",
        "externalId": "5a1f9c1e-0d7b-4f0e-9b57-6d3c0b7f8e21",
        "amount": "1500",
        "currency": "EUR",
        "payer": {"partyIdType": "MSISDN", "partyId": "256772123456"},
        "payerMessage": "Pay ACC-7",
        "payeeNote": "momo request 1 ACC-7",
        "status": status,
    }
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def parsed(body: bytes) -> RequestResult:
    result = ADAPTER.parse(CALLBACK, body, CTX)
    assert isinstance(result, RequestResult)
    return result


class TestCallback:
    def test_a_success_is_found_by_external_id_and_never_trusted(self) -> None:
        result = parsed(callback())
        assert result.provider == "mtn"
        assert result.reference == "5a1f9c1e-0d7b-4f0e-9b57-6d3c0b7f8e21"
        assert (result.state, result.code, result.amount) == ("paid", "2041375872", 150000)
        assert result.verified is False

    def test_the_payer_is_read_with_its_country_code_not_the_default_region(self) -> None:
        # 0772... would be nothing in Kenya; MTN's partyId is international without "+"
        result = parsed(callback(payer={"partyIdType": "MSISDN", "partyId": "256772123456"}))
        assert result.msisdn is not None and result.msisdn.e164 == "+256772123456"
        sandbox = parsed(callback(payer={"partyIdType": "MSISDN", "partyId": "46733123453"}))
        assert sandbox.msisdn is not None and sandbox.msisdn.e164 == "+46733123453"
        local = parsed(callback(payer={"partyIdType": "MSISDN", "partyId": "0772123456"}))
        assert local.msisdn is None  # not guessed: the request's own phone stands

    @pytest.mark.parametrize(
        ("reason", "state", "code", "words"),
        [
            ("NOT_ENOUGH_FUNDS", "failed", "NOT_ENOUGH_FUNDS", "NOT_ENOUGH_FUNDS"),
            ("APPROVAL_REJECTED", "cancelled", "APPROVAL_REJECTED", "APPROVAL_REJECTED"),
            (
                {"code": "PAYER_NOT_FOUND", "message": "Payer not found"},
                "failed",
                "PAYER_NOT_FOUND",
                "Payer not found",
            ),
            (None, "failed", "FAILED", "MTN gave no reason"),
        ],
    )
    def test_a_failure_with_its_reason_as_a_string_or_an_object(
        self, reason: Any, state: str, code: str, words: str
    ) -> None:
        result = parsed(callback("FAILED", financialTransactionId=None, reason=reason))
        assert (result.state, result.result_code, result.result_description) == (
            state,
            code,
            words,
        )
        assert result.verified is False and result.code is None

    def test_pending_is_pending(self) -> None:
        assert parsed(callback("PENDING", financialTransactionId=None)).state == "pending"

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"<html>", "invalid_json"),
            (b"[]", "not_an_object"),
            (callback(externalId=None), "invalid_field"),
            (callback("ONGOING"), "invalid_status"),
            (callback(amount="1,500"), "invalid_amount"),
            (callback(amount="-1"), "invalid_amount"),
            (callback(financialTransactionId="12 34"), "invalid_code"),
        ],
    )
    def test_a_body_that_is_not_mtns_shape_is_refused(self, body: bytes, reason: str) -> None:
        with pytest.raises(InvalidCallback) as caught:
            ADAPTER.parse(CALLBACK, body, CTX)
        assert caught.value.reason == reason

    @pytest.mark.parametrize("method", ["PUT", "POST"])
    def test_it_is_taken_on_put_and_post_and_kept(
        self, client: FlaskClient, runtime: Any, method: str
    ) -> None:
        runtime.settings = runtime.settings.with_provider("mtn", MtnSettings(path_token=MTN_TOKEN))
        url = f"/webhooks/mtn/{MTN_TOKEN}/callback"
        answer = client.open(url, method=method, data=callback(), content_type="application/json")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert client.open(url, method="PATCH", data=callback()).status_code == 405
        assert client.put(f"/webhooks/mtn/{'x' * 36}/callback", data=callback()).status_code == 404
        bad = client.open(url, method=method, data=callback("ONGOING"))
        assert bad.status_code == 400
        assert bad.get_json()["reason"] == "invalid_status"
        with runtime.sessions.begin() as session:
            rows = session.query(InboxItem).order_by(InboxItem.id).all()
            assert [(r.provider, r.kind, r.status) for r in rows] == [
                ("mtn", "callback", INBOX_PENDING),
                ("mtn", "callback", INBOX_REJECTED),
            ]


# --- which provider a phone goes to ----------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "provider"),
    [
        ("+256772123456", "mtn"),  # MTN Uganda
        ("+233244123456", "mtn"),  # MTN Ghana
        ("+250781234567", "mtn"),  # MTN Rwanda
        ("+237671234567", "mtn"),  # MTN Cameroon
        ("+254712345678", "mpesa"),  # Safaricom
    ],
)
def test_the_phones_network_chooses_mtn(phone: str, provider: str) -> None:
    assert choose_provider(requesters(), Settings(), phone, None).name == provider


def test_a_number_of_another_network_is_not_mtns() -> None:
    with pytest.raises(InvalidInput) as caught:
        choose_provider(requesters(), Settings(), "+254770123456", None)  # Telkom Kenya
    assert caught.value.code == "provider_unknown_for_phone"


def test_the_fakes_callback_is_the_adapters_shape(mtn: MtnFake) -> None:
    mtn.will(MtnResult(status="FAILED", reason={"code": "EXPIRED", "message": "Expired"}))
    ask = an_ask()
    collection(mtn).request_to_pay(ask, None)
    body = to_json(mtn.callback_body(mtn.transactions[ask.reference or ""]))
    result = parsed(body)
    assert (result.reference, result.state, result.result_code) == (
        ask.reference,
        "failed",
        "EXPIRED",
    )
