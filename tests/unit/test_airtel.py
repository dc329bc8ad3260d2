"""Airtel Money: its settings block, its client against a fake Airtel on loopback, its
callback and hash, and momo without Airtel set up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.config import ConfigError, Settings
from core.providers import ParseContext
from ingest.providers import ADAPTERS, load_settings
from ingest.providers.airtel import (
    SANDBOX,
    AirtelAdapter,
    AirtelSettings,
    Collections,
    callback_hash,
    hash_problem,
    local_msisdn,
)
from ingest.providers.outbound import (
    Ask,
    NoAnswer,
    ProviderRefused,
    ProviderUnavailable,
    Timeouts,
)
from matcher.models import InboxItem
from matcher.notifications import InvalidCallback, RequestResult
from tests.conftest import PATH_TOKEN
from tests.fakes import HELD, PAY, QUERY, TOKEN, AirtelFake, AirtelResult
from tests.fakes.airtel import CALLBACK_KEY, CLIENT_ID, CLIENT_SECRET, NO_HASH, TAMPERED, sign
from tests.unit.test_cli import database_url, env, serve  # noqa: F401 (fixtures)

AIRTEL_TOKEN = "airtel-path-token-" + "0123456789abcdef" * 2
ADAPTER = AirtelAdapter()
CTX = ParseContext()


# --- settings -----------------------------------------------------------------------------

FULL = {
    "MOMO_AIRTEL_PATH_TOKEN": AIRTEL_TOKEN,
    "MOMO_AIRTEL_CALLBACK_KEY": "the-private-key",
    "MOMO_AIRTEL_CLIENT_ID": "client-id",
    "MOMO_AIRTEL_CLIENT_SECRET": "client-secret",
    "MOMO_AIRTEL_API_BASE": "https://openapi.airtel.africa/",
    "MOMO_AIRTEL_COUNTRY": "ug",
    "MOMO_AIRTEL_CURRENCY": "ugx",
    "MOMO_CURRENCY": "UGX",
}


def airtel_block(environ: dict[str, str]) -> AirtelSettings:
    block: AirtelSettings = load_settings(environ).providers["airtel"]
    return block


class TestSettings:
    def test_nothing_set_is_airtel_off_and_momo_starts(self) -> None:
        block = airtel_block({})
        assert (block.path_token, block.client_id, block.callback_key) == (None, None, None)
        assert block.api_base == SANDBOX
        assert (block.country, block.currency) == ("KE", "KES")
        assert ADAPTER.requests_missing(load_settings({})) == [
            "MOMO_AIRTEL_CLIENT_ID",
            "MOMO_AIRTEL_CLIENT_SECRET",
            "MOMO_AIRTEL_PATH_TOKEN",
        ]

    def test_every_variable_is_read(self) -> None:
        block = airtel_block(FULL)
        assert block.path_token == AIRTEL_TOKEN
        assert block.callback_key == "the-private-key"
        assert (block.client_id, block.client_secret) == ("client-id", "client-secret")
        assert block.api_base == "https://openapi.airtel.africa"
        assert (block.country, block.currency) == ("UG", "UGX")
        assert ADAPTER.requests_missing(load_settings(FULL)) == []

    def test_the_country_defaults_to_the_region_only_where_airtel_collects(self) -> None:
        assert airtel_block({"MOMO_DEFAULT_REGION": "TZ"}).country == "TZ"
        settings = load_settings({"MOMO_DEFAULT_REGION": "GB"})
        assert settings.providers["airtel"].country is None
        assert "MOMO_AIRTEL_COUNTRY" in ADAPTER.requests_missing(settings)

    @pytest.mark.parametrize(
        ("changes", "named"),
        [
            ({"MOMO_AIRTEL_PATH_TOKEN": "short"}, "MOMO_AIRTEL_PATH_TOKEN"),
            ({"MOMO_AIRTEL_PATH_TOKEN": "change-me-change-me-change-me-123"}, "placeholder"),
            ({"MOMO_AIRTEL_CLIENT_SECRET": ""}, "MOMO_AIRTEL_CLIENT_SECRET is not set"),
            ({"MOMO_AIRTEL_CLIENT_ID": " "}, "MOMO_AIRTEL_CLIENT_ID is not set"),
            ({"MOMO_AIRTEL_API_BASE": "openapi.airtel.africa"}, "MOMO_AIRTEL_API_BASE"),
            ({"MOMO_AIRTEL_COUNTRY": "XX"}, "MOMO_AIRTEL_COUNTRY='XX'"),
            ({"MOMO_AIRTEL_COUNTRY": "Uganda"}, "two-letter code"),
            ({"MOMO_AIRTEL_CURRENCY": "shillings"}, "MOMO_AIRTEL_CURRENCY='shillings'"),
            ({"MOMO_AIRTEL_CURRENCY": "KES"}, "differs from MOMO_CURRENCY=UGX"),
        ],
    )
    def test_a_bad_value_stops_the_load_naming_the_variable(
        self, changes: dict[str, str], named: str
    ) -> None:
        with pytest.raises(ConfigError, match=named):
            load_settings(FULL | changes)

    def test_secrets_stay_out_of_the_blocks_text(self) -> None:
        shown = repr(airtel_block(FULL))
        for secret in ("the-private-key", "client-secret", AIRTEL_TOKEN):
            assert secret not in shown
        assert "client-id" in shown


# --- the client ---------------------------------------------------------------------------


@pytest.fixture
def airtel() -> Iterator[AirtelFake]:
    with AirtelFake() as fake:
        fake.default_outcome = AirtelResult(callback=HELD)
        yield fake
    assert fake.errors == []


def collections(fake: AirtelFake, **changes: Any) -> Collections:
    block = AirtelSettings(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_base=fake.base_url,
        country=fake.country,
        currency=fake.currency,
        timeouts=Timeouts(connect=1.0, read=0.5),
    )
    return Collections(AirtelSettings(**{**block.__dict__, **changes}))


ASK = Ask(
    request_id=7,
    phone="+254733123456",
    amount=150000,
    currency="KES",
    account_number="HOTSPOT-ACC-000123",
    reference="momo-7-0a1b2c3d",
)


def ask(**changes: Any) -> Ask:
    return Ask(**{**ASK.__dict__, **changes})


class TestClient:
    def test_a_push_is_shaped_as_airtel_takes_it_and_names_our_id(self, airtel: AirtelFake) -> None:
        asked = collections(airtel).push(ASK, "momo-7-0a1b2c3d")
        assert asked.reference == "momo-7-0a1b2c3d"
        (push,) = airtel.calls(PAY)
        assert push.headers["X-Country"] == "KE" and push.headers["X-Currency"] == "KES"
        assert push.json["subscriber"] == {
            "country": "KE",
            "currency": "KES",
            "msisdn": "733123456",
        }
        assert push.json["transaction"] == {
            "amount": 1500,
            "country": "KE",
            "currency": "KES",
            "id": "momo-7-0a1b2c3d",
        }
        assert push.json["reference"] == "HOTSPOT-ACC-000123"
        assert "momo-7-0a1b2c3d" in airtel.transactions

    def test_an_amount_with_cents_is_written_exactly(self, airtel: AirtelFake) -> None:
        collections(airtel).push(ask(amount=150050), "momo-7-a")
        (push,) = airtel.calls(PAY)
        assert b'"amount":1500.50' in push.body
        assert push.json["transaction"]["amount"] == Decimal("1500.50")

    def test_one_token_serves_many_calls_and_an_expired_one_is_fetched_again(
        self, airtel: AirtelFake
    ) -> None:
        client = collections(airtel)
        client.push(ASK, "momo-7-a")
        client.query("momo-7-a")
        assert len(airtel.calls(TOKEN)) == 1
        airtel.expire_tokens()  # mid-run: Airtel answers 401 invalid_token
        assert client.query("momo-7-a").state == "paid"
        assert len(airtel.calls(TOKEN)) == 2
        assert airtel.calls(TOKEN)[0].json == {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "client_credentials",
        }

    def test_wrong_credentials_are_named(self, airtel: AirtelFake) -> None:
        with pytest.raises(ProviderRefused) as raised:
            collections(airtel, client_secret="wrong").push(ASK, "momo-7-a")
        assert raised.value.reason == "credentials_refused"
        assert "MOMO_AIRTEL_CLIENT_SECRET" in raised.value.message
        assert "wrong" not in raised.value.message
        assert airtel.calls(PAY) == []

    def test_a_5xx_then_success_is_one_prompt(self, airtel: AirtelFake) -> None:
        airtel.fail_next(PAY, status=503)
        assert collections(airtel).push(ASK, "momo-7-a").reference == "momo-7-a"
        assert len(airtel.calls(PAY)) == 2
        assert list(airtel.transactions) == ["momo-7-a"]

    def test_an_outage_is_unavailable_and_nobody_was_prompted(self, airtel: AirtelFake) -> None:
        airtel.fail_next(PAY, times=10, status=500)
        with pytest.raises(ProviderUnavailable):
            collections(airtel).push(ASK, "momo-7-a")
        assert airtel.transactions == {}

    def test_a_push_left_unanswered_is_never_sent_again_and_is_asked_about(
        self, airtel: AirtelFake
    ) -> None:
        airtel.hang_next(PAY, seconds=2)
        client = collections(airtel)
        with pytest.raises(NoAnswer):
            client.push(ASK, "momo-7-a")
        result = client.query("momo-7-a")  # Airtel took it all the same
        assert (result.state, result.code) == (
            "paid",
            airtel.transactions["momo-7-a"].data["airtel_money_id"],
        )
        assert len(airtel.calls(PAY)) == 1

    @pytest.mark.parametrize("shape", ["not_json", "empty", "missing_fields"])
    def test_a_malformed_push_answer_is_no_answer(self, airtel: AirtelFake, shape: str) -> None:
        airtel.malformed_next(PAY, shape)
        with pytest.raises(NoAnswer):
            collections(airtel).push(ASK, "momo-7-a")
        assert len(airtel.calls(PAY)) == 1

    @pytest.mark.parametrize("shape", ["not_json", "missing_fields"])
    def test_a_malformed_enquiry_answer_is_no_answer(self, airtel: AirtelFake, shape: str) -> None:
        client = collections(airtel)
        client.push(ASK, "momo-7-a")
        airtel.malformed_next(QUERY, shape)
        with pytest.raises(NoAnswer):
            client.query("momo-7-a")

    @pytest.mark.parametrize(
        ("refusal", "words", "reason"),
        [
            ("invalid_msisdn", "Invalid Msisdn Length", "400"),
            ("invalid_amount", "Invalid Amount", "DP00800001004"),
            ("limit_exceeded", "Exceeds withdrawal amount limit", "DP00800001003"),
        ],
    )
    def test_a_refusal_carries_airtels_words(
        self, airtel: AirtelFake, refusal: str, words: str, reason: str
    ) -> None:
        airtel.refuse_next(PAY, refusal)
        with pytest.raises(ProviderRefused) as raised:
            collections(airtel).push(ASK, "momo-7-a")
        assert words in raised.value.message
        assert (raised.value.status, raised.value.reason) == (400, reason)

    def test_a_number_of_another_country_is_refused_before_airtel_is_asked(
        self, airtel: AirtelFake
    ) -> None:
        with pytest.raises(ProviderRefused) as raised:
            collections(airtel).push(ask(phone="+256701234567"), "momo-7-a")
        assert raised.value.reason == "phone_outside_country"
        assert "+256701234567" in raised.value.message and "KE" in raised.value.message
        assert airtel.calls(PAY) == []

    def test_another_currency_is_refused_before_airtel_is_asked(self, airtel: AirtelFake) -> None:
        with pytest.raises(ProviderRefused, match="MOMO_AIRTEL_CURRENCY"):
            collections(airtel).push(ask(currency="UGX"), "momo-7-a")
        assert airtel.calls(PAY) == []

    @pytest.mark.parametrize(
        ("status", "state"),
        [("TS", "paid"), ("TF", "failed"), ("TE", "failed"), ("TA", "pending")],
    )
    def test_the_enquiry_reads_each_status(
        self, airtel: AirtelFake, status: str, state: str
    ) -> None:
        airtel.default_outcome = None
        client = collections(airtel)
        client.push(ASK, "momo-7-a")
        pending = client.query("momo-7-a")
        assert (pending.state, pending.result_code) == ("pending", "TIP")
        airtel.decide("momo-7-a", AirtelResult(status=status, callback=HELD))
        result = client.query("momo-7-a")
        assert (result.state, result.result_code, result.provider) == (state, status, "airtel")
        assert (result.code is not None) == (state == "paid")
        assert result.amount is None  # the stored request says what was asked

    def test_an_id_airtel_does_not_know_stays_pending(self, airtel: AirtelFake) -> None:
        result = collections(airtel).query("momo-404-x")
        assert (result.state, result.result_code) == ("pending", "DP00800001025")


@pytest.mark.parametrize(
    ("phone", "country", "local"),
    [("+254733123456", "KE", "733123456"), ("+256701234567", "UG", "701234567")],
)
def test_the_msisdn_goes_without_its_country_code(phone: str, country: str, local: str) -> None:
    assert local_msisdn(phone, country) == local


# --- the callback -------------------------------------------------------------------------


def callback(
    status: str = "TS", *, money_id: str | None = "MP210603.1234.L06941", key: str | None = None
) -> bytes:
    transaction = {
        "id": "momo-7-0a1b2c3d",
        "message": "Paid KES 1,500 to MOMO TEST LIMITED",
        "status_code": status,
        "airtel_money_id": money_id,
    }
    body: dict[str, Any] = {"transaction": transaction}
    if key is not None:
        body["hash"] = sign(transaction, key)
    return json.dumps(body, separators=(",", ":")).encode()


class TestCallback:
    @pytest.mark.parametrize(
        ("status", "state"),
        [("TS", "paid"), ("TF", "failed"), ("TE", "failed"), ("TIP", "pending"), ("TA", "pending")],
    )
    def test_each_status_is_a_request_result(self, status: str, state: str) -> None:
        result = ADAPTER.parse("callback", callback(status), CTX)
        assert result == RequestResult(
            provider="airtel",
            reference="momo-7-0a1b2c3d",
            state=state,  # type: ignore[arg-type]
            result_code=status,
            result_description="Paid KES 1,500 to MOMO TEST LIMITED",
            channel="ussd_push",
            code="MP210603.1234.L06941" if state == "paid" else None,
        )

    def test_a_failure_needs_no_airtel_money_id(self) -> None:
        result = ADAPTER.parse("callback", callback("TF", money_id=None), CTX)
        assert isinstance(result, RequestResult) and result.state == "failed"

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (callback("TS", money_id=None), "missing_field"),
            (callback("XX"), "invalid_status"),
            (b"not json", "invalid_json"),
            (b"[1]", "invalid_json"),
            (b'{"transaction":{},"transaction":{}}', "invalid_json"),
            (b'{"transaction":"TS"}', "invalid_field"),
            (b'{"hash":"x"}', "missing_field"),
            (b'{"transaction":{"status_code":"TS","airtel_money_id":"MP1"}}', "missing_field"),
            (b'{"transaction":{"id":"a b","status_code":"TF"}}', "invalid_field"),
            (b'{"transaction":{"id":"x","status_code":"TF","message":3}}', "invalid_field"),
            (b"\xff\xfe", "invalid_json"),
        ],
    )
    def test_what_is_not_airtels_shape_is_named(self, body: bytes, reason: str) -> None:
        with pytest.raises(InvalidCallback) as raised:
            ADAPTER.parse("callback", body, CTX)
        assert raised.value.reason == reason

    def test_an_unknown_kind_is_refused(self) -> None:
        with pytest.raises(InvalidCallback, match="unknown Airtel Money callback kind"):
            ADAPTER.parse("c2b/confirmation", callback(), CTX)


def keyed(key: str | None) -> Settings:
    return Settings(providers={"airtel": AirtelSettings(path_token=AIRTEL_TOKEN, callback_key=key)})


class TestHash:
    def test_the_hash_is_the_one_airtels_sample_describes(self) -> None:
        transaction = '{"id":"x","message":"m","status_code":"TS","airtel_money_id":"MP1"}'
        assert callback_hash(transaction, CALLBACK_KEY) == sign(
            json.loads(transaction), CALLBACK_KEY
        )

    def test_a_good_hash_passes(self) -> None:
        assert (
            ADAPTER.signature_problem(keyed(CALLBACK_KEY), {}, callback(key=CALLBACK_KEY)) is None
        )

    def test_another_keys_hash_is_refused(self) -> None:
        problem = ADAPTER.signature_problem(keyed(CALLBACK_KEY), {}, callback(key="other"))
        assert problem is not None and "does not match" in problem

    def test_a_missing_hash_is_refused_when_a_key_is_set(self) -> None:
        problem = ADAPTER.signature_problem(keyed(CALLBACK_KEY), {}, callback())
        assert problem is not None and "MOMO_AIRTEL_CALLBACK_KEY" in problem

    def test_without_a_key_no_hash_is_asked_for(self) -> None:
        assert ADAPTER.signature_problem(keyed(None), {}, callback()) is None
        assert ADAPTER.signature_problem(keyed(None), {}, b"anything") is None

    def test_the_bytes_as_sent_are_what_is_checked(self) -> None:
        # the same transaction written with other whitespace is another message
        spaced = callback(key=CALLBACK_KEY).replace(b'"id":', b'"id": ')
        assert ADAPTER.signature_problem(keyed(CALLBACK_KEY), {}, spaced) is not None

    def test_the_fakes_tampered_and_unhashed_callbacks_are_refused(self) -> None:
        with AirtelFake() as fake:
            fake.will(
                AirtelResult(hash=TAMPERED, callback=HELD),
                AirtelResult(hash=NO_HASH, callback=HELD),
            )
            client = collections(fake)
            for reference in ("momo-1-a", "momo-2-b"):
                client.push(ask(reference=reference), reference)
                body = json.dumps(
                    fake.callback_body(fake.transactions[reference]), separators=(",", ":")
                ).encode()
                assert hash_problem(body, CALLBACK_KEY) is not None
        assert fake.errors == []

    @hypothesis_settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), status=st.sampled_from(["TS", "TF", "TIP", "TA"]))
    def test_any_flipped_byte_of_the_body_is_refused(
        self, data: st.DataObject, status: str
    ) -> None:
        body = callback(status, key=CALLBACK_KEY)
        at = data.draw(st.integers(0, len(body) - 1), label="at")
        flip = data.draw(st.integers(1, 255), label="flip")
        changed = body[:at] + bytes([body[at] ^ flip]) + body[at + 1 :]
        assert hash_problem(changed, CALLBACK_KEY) is not None

    @given(data=st.data())
    def test_any_flipped_byte_of_the_hash_is_refused(self, data: st.DataObject) -> None:
        transaction = json.loads(callback())["transaction"]
        good = sign(transaction, CALLBACK_KEY)
        at = data.draw(st.integers(0, len(good) - 1))
        replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != good[at]))
        bad = good[:at] + replacement + good[at + 1 :]
        body = json.dumps({"transaction": transaction, "hash": bad}, separators=(",", ":"))
        assert hash_problem(body.encode(), CALLBACK_KEY) is not None


# --- the webhook, and momo without Airtel ---------------------------------------------------


def airtel_url(token: str = AIRTEL_TOKEN) -> str:
    return f"/webhooks/airtel/{token}/callback"


def inbox(runtime: Any) -> list[InboxItem]:
    with runtime.sessions.begin() as session:
        rows = session.query(InboxItem).all()
        session.expunge_all()
        return rows


class TestWebhook:
    def test_without_a_path_token_airtels_urls_answer_404_and_keep_nothing(
        self, client: FlaskClient, runtime: Any
    ) -> None:
        for token in (AIRTEL_TOKEN, "None", ""):
            answer = client.post(
                f"/webhooks/airtel/{token}/callback",
                data=callback(),
                content_type="application/json",
            )
            assert answer.status_code == 404
        assert inbox(runtime) == []

    def test_with_one_a_callback_is_kept_and_acknowledged(
        self, client: FlaskClient, runtime: Any
    ) -> None:
        runtime.settings = runtime.settings.with_provider(
            "airtel", AirtelSettings(path_token=AIRTEL_TOKEN, callback_key=CALLBACK_KEY)
        )
        answer = client.post(
            airtel_url(), data=callback(key=CALLBACK_KEY), content_type="application/json"
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.get_json()["status"]["success"] is True
        assert [(r.provider, r.kind) for r in inbox(runtime)] == [("airtel", "callback")]
        wrong = client.post(airtel_url(PATH_TOKEN), data=callback(key=CALLBACK_KEY))
        assert wrong.status_code == 404

    def test_a_bad_hash_is_401_in_airtels_shape_and_nothing_is_kept(
        self, client: FlaskClient, runtime: Any
    ) -> None:
        runtime.settings = runtime.settings.with_provider(
            "airtel", AirtelSettings(path_token=AIRTEL_TOKEN, callback_key=CALLBACK_KEY)
        )
        answer = client.post(
            airtel_url(), data=callback(key="other"), content_type="application/json"
        )
        assert answer.status_code == 401
        assert answer.get_json()["status"]["success"] is False
        assert "does not match" in answer.get_json()["status"]["message"]
        assert inbox(runtime) == []


class TestServe:
    def test_without_airtel_serve_shows_no_airtel_url_and_makes_no_token(
        self,
        serve: Any,  # noqa: F811 (the imported fixture)
        tmp_path: Path,
    ) -> None:
        result = serve()
        assert result.exit_code == 0, result.output
        assert "M-PESA callback URLs" in result.output
        assert "Airtel" not in result.output and "/webhooks/airtel" not in result.output
        assert not (tmp_path / "instance" / "airtel_path_token").exists()

    def test_with_its_token_serve_shows_its_url_without_the_token(
        self,
        serve: Any,  # noqa: F811 (the imported fixture)
        tmp_path: Path,
    ) -> None:
        result = serve(MOMO_AIRTEL_PATH_TOKEN=AIRTEL_TOKEN)
        assert result.exit_code == 0, result.output
        assert "Airtel Money callback URLs" in result.output
        assert "/webhooks/airtel/<path token>/callback" in result.output
        assert AIRTEL_TOKEN not in result.output


def test_airtel_is_registered_after_mpesa_and_is_optional() -> None:
    assert next(iter(ADAPTERS)) == "mpesa"
    assert ADAPTERS["airtel"].registration.optional
    assert not ADAPTERS["mpesa"].registration.optional
