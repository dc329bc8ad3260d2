"""The generic webhook: Standard Webhooks signatures, MOMO_GENERIC_SECRETS, the documented
body, and payments from it matched and credited once, on the fast path and the Flask view."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.datastructures import Headers

from core.config import ConfigError, Settings
from core.providers import ParseContext
from ingest.providers import ADAPTERS, load_settings
from ingest.providers.generic import (
    CODE_MAX,
    SECRETS_VARIABLE,
    TOLERANCE_SECONDS,
    GenericAdapter,
    GenericSettings,
    read_settings,
    settings_of,
    sign,
    signature_problem,
)
from matcher.models import INBOX_REJECTED, InboxItem, Payment
from matcher.notifications import InvalidCallback, PaymentNotification
from momo.app import create_app
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, mpesa_block
from tests.unit.test_fast_path import MakeEdge, make_edge, same_answer  # noqa: F401 (a fixture)

SOURCE = "isp-billing"
OTHER = "aggregator"
KEY = b"k" * 16 + bytes(range(16))  # 32 bytes
OLD_KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(200, 232))


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def generic_block(**sources: tuple[bytes, ...]) -> GenericSettings:
    return GenericSettings(
        secrets=tuple((name.replace("_", "-"), keys) for name, keys in sources.items())
    )


#: isp-billing signs with KEY (and, while it rotates, OLD_KEY); aggregator with OTHER_KEY
BLOCK = generic_block(isp_billing=(KEY, OLD_KEY), aggregator=(OTHER_KEY,))


def payment(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "code": "INV-2026-0042",
        "amount": "1500.00",
        "currency": "KES",
        "phone": "0712345678",
        "account_reference": "ACC-1001",
        "paid_at": "2026-03-01T14:05:09+03:00",
        "payer_name": "Jane Doe",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def encoded(doc: dict[str, Any] | bytes) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def signed_headers(
    body: bytes,
    key: bytes = KEY,
    *,
    message_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    timestamp: int | None = None,
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, message_id, ts, body),
    }


def url(source: str = SOURCE) -> str:
    return f"/webhooks/generic/{source}"


# --- MOMO_GENERIC_SECRETS -------------------------------------------------------------------


class TestSecretsVariable:
    def test_unset_the_webhook_is_off_and_momo_starts_as_before(self) -> None:
        settings = load_settings({})
        assert settings_of(settings) == GenericSettings()
        assert settings_of(settings).sources == ()
        assert GenericAdapter().route(settings, SOURCE, None) is None

    def test_a_source_named_twice_has_both_secrets(self) -> None:
        raw = f" {SOURCE}={whsec(KEY)} , {SOURCE}={whsec(OLD_KEY)},,{OTHER}={whsec(OTHER_KEY)} "
        block = read_settings({SECRETS_VARIABLE: raw})
        assert block.sources == (SOURCE, OTHER)
        assert block.keys(SOURCE) == (KEY, OLD_KEY)
        assert block.keys(OTHER) == (OTHER_KEY,)
        assert block.keys("nobody") == ()

    def test_unpadded_base64_is_the_same_secret(self) -> None:
        key = bytes(range(25))  # 25 bytes: its base64 ends in "=="
        text = whsec(key)
        assert text.endswith("==")
        assert read_settings({SECRETS_VARIABLE: f"a={text.rstrip('=')}"}).keys("a") == (key,)

    def test_the_spec_example_secret_is_taken(self) -> None:
        block = read_settings({SECRETS_VARIABLE: "x=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
        assert len(block.keys("x")[0]) == 24

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            (whsec(KEY), "entry 1 names no source"),
            (whsec(KEY).rstrip("="), "entry 1 names no source"),
            (f"a={whsec(KEY)},{whsec(OLD_KEY)}", "entry 2 names no source"),
            (f"ISP={whsec(KEY)}", "names the source 'ISP'"),
            (f"isp/billing={whsec(KEY)}", "not 1-24 lowercase letters"),
            (f"{'a' * 25}={whsec(KEY)}", "not 1-24 lowercase letters"),
            (f"={whsec(KEY)}", "names the source ''"),
            (f"a={base64.b64encode(KEY).decode()}", "does not start with whsec_"),
            ("a=whsec_not*base64!", "is not base64"),
            ("a=whsec_", "is not base64"),
            (f"a={whsec(bytes(16))}", "is 16 bytes"),
            (f"a={whsec(bytes(65))}", "is 65 bytes"),
            (f"a={whsec(KEY)},b={whsec(KEY)}", "sources 'a' and 'b' the same secret"),
        ],
    )
    def test_a_malformed_value_is_refused_naming_the_variable_never_the_secret(
        self, value: str, says: str
    ) -> None:
        with pytest.raises(ConfigError) as raised:
            load_settings({SECRETS_VARIABLE: value})
        message = str(raised.value)
        assert SECRETS_VARIABLE in message
        assert says in message
        for secret in (KEY, OLD_KEY, bytes(16), bytes(65)):
            text = base64.b64encode(secret).decode()
            assert not any(text[i : i + 12] in message for i in range(len(text) - 12))
        assert "not*base64" not in message

    def test_the_settings_never_show_a_secret(self) -> None:
        block = read_settings({SECRETS_VARIABLE: f"{SOURCE}={whsec(KEY)}"})
        shown = repr(Settings(providers={"generic": block}))
        assert base64.b64encode(KEY).decode() not in shown
        assert repr(KEY) not in shown

    def test_momo_starts_without_it_and_only_mpesa_needs_a_path_token(self, tmp_path: Any) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            instance_path=tmp_path / "instance",
        )
        app = create_app(settings)  # no ConfigError about the generic webhook
        app.extensions["momo"].close()
        assert "generic" in ADAPTERS


# --- signatures -----------------------------------------------------------------------------


class TestSignatures:
    # The test vector of the Standard Webhooks reference libraries (their tests'
    # test_sign_function): secret, message id, timestamp, payload and signature.
    SPEC_KEY = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    SPEC_TS = 1614265330
    SPEC_BODY = b'{"test": 2432232314}'
    SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def spec_headers(self, signature: str | None = None) -> Mapping[str, str]:
        # as the webhook edge passes them: looked up by name in any case
        headers = Headers(
            {
                "Webhook-Id": self.SPEC_ID,
                "Webhook-Timestamp": str(self.SPEC_TS),
                "Webhook-Signature": signature or self.SPEC_SIGNATURE,
            }
        )
        return cast(Mapping[str, str], headers)

    def test_the_spec_test_vector_signs_and_verifies(self) -> None:
        assert sign(self.SPEC_KEY, self.SPEC_ID, self.SPEC_TS, self.SPEC_BODY) == (
            self.SPEC_SIGNATURE
        )
        problem = signature_problem(
            (self.SPEC_KEY,), self.spec_headers(), self.SPEC_BODY, now=self.SPEC_TS
        )
        assert problem is None

    def test_the_spec_vectors_wrong_signature_is_refused(self) -> None:
        # the reference tests' "invalid signature": the last character changed
        wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
        problem = signature_problem(
            (self.SPEC_KEY,), self.spec_headers(wrong), self.SPEC_BODY, now=self.SPEC_TS
        )
        assert problem == "no v1 signature in webhook-signature matches this source's secret"

    def test_a_list_with_other_versions_and_junk_is_searched_for_a_match(self) -> None:
        signatures = " ".join(
            [
                "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl",
                "v2," + self.SPEC_SIGNATURE[3:],
                "nonsense",
                "",
                self.SPEC_SIGNATURE,
            ]
        )
        assert (
            signature_problem(
                (self.SPEC_KEY,), self.spec_headers(signatures), self.SPEC_BODY, now=self.SPEC_TS
            )
            is None
        )

    def test_old_and_new_secrets_are_both_accepted_while_a_sender_rotates(self) -> None:
        body = encoded(payment())
        now = int(time.time())
        for key in (KEY, OLD_KEY):
            assert signature_problem((KEY, OLD_KEY), signed_headers(body, key), body, now) is None
        # a sender that signs with both (space-separated) is taken by either secret alone
        both = signed_headers(body, KEY)
        both["webhook-signature"] += " " + signed_headers(body, OLD_KEY)["webhook-signature"]
        assert signature_problem((OLD_KEY,), both, body, now) is None
        # another source's secret proves nothing
        problem = signature_problem((KEY, OLD_KEY), signed_headers(body, OTHER_KEY), body, now)
        assert problem is not None

    @pytest.mark.parametrize("offset", [-TOLERANCE_SECONDS, 0, TOLERANCE_SECONDS])
    def test_a_timestamp_within_five_minutes_either_way_is_taken(self, offset: int) -> None:
        body, now = encoded(payment()), 1_800_000_000
        headers = signed_headers(body, timestamp=now + offset)
        assert signature_problem((KEY,), headers, body, now) is None

    @pytest.mark.parametrize(
        ("offset", "says"),
        [
            (-TOLERANCE_SECONDS - 1, "301 seconds behind this server's clock"),
            (TOLERANCE_SECONDS + 1, "301 seconds ahead of this server's clock"),
            (-86_400, "86400 seconds behind"),
        ],
    )
    def test_a_stale_or_future_timestamp_is_refused(self, offset: int, says: str) -> None:
        body, now = encoded(payment()), 1_800_000_000
        headers = signed_headers(body, timestamp=now + offset)  # correctly signed, all the same
        problem = signature_problem((KEY,), headers, body, now)
        assert problem is not None
        assert says in problem
        assert "within 5 minutes" in problem

    @pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_a_missing_header_is_named(self, missing: str) -> None:
        body = encoded(payment())
        headers = signed_headers(body)
        del headers[missing]
        problem = signature_problem((KEY,), headers, body, time.time())
        assert problem is not None
        assert problem.startswith(f"{missing} missing")

    @pytest.mark.parametrize(
        ("header", "value", "says"),
        [
            ("webhook-id", "msg.1", "without spaces or '.'"),
            ("webhook-id", "msg 1", "without spaces or '.'"),
            ("webhook-timestamp", "1674087231.5", "whole seconds since 1970"),
            ("webhook-timestamp", "-1674087231", "whole seconds since 1970"),
            ("webhook-timestamp", "soon", "whole seconds since 1970"),
        ],
    )
    def test_malformed_headers_are_refused_saying_what_they_should_be(
        self, header: str, value: str, says: str
    ) -> None:
        body = encoded(payment())
        headers = signed_headers(body)
        headers[header] = value
        problem = signature_problem((KEY,), headers, body, time.time())
        assert problem is not None
        assert says in problem

    @given(data=st.data())
    def test_any_flipped_byte_of_body_id_timestamp_or_signature_fails(
        self, data: st.DataObject
    ) -> None:
        body = encoded(payment())
        now = 1_800_000_000
        headers = signed_headers(body, timestamp=now)
        assert signature_problem((KEY,), headers, body, now) is None
        part = data.draw(
            st.sampled_from(["body", "webhook-id", "webhook-timestamp", "webhook-signature"])
        )
        original = body if part == "body" else headers[part].encode("ascii")
        index = data.draw(st.integers(0, len(original) - 1))
        # any other value of that byte that a header can carry (printable ASCII for headers)
        mask = data.draw(st.integers(1, 255))
        flipped = bytearray(original)
        flipped[index] ^= mask
        if part != "body":
            flipped[index] = 0x21 + (original[index] - 0x21 + mask) % 94
            if flipped[index] == original[index]:
                flipped[index] = 0x21 + (original[index] - 0x21 + 1) % 94
        changed = bytes(flipped)
        assert changed != original
        if part == "body":
            problem = signature_problem((KEY,), headers, changed, now)
        else:
            problem = signature_problem(
                (KEY,), {**headers, part: changed.decode("ascii")}, body, now
            )
        assert problem is not None

    def test_the_base_adapter_fails_closed(self) -> None:
        # only the adapter of a source's URL knows which secrets prove it
        settings = Settings(providers={"generic": BLOCK})
        body = encoded(payment())
        assert GenericAdapter().signature_problem(settings, signed_headers(body), body)
        assert (
            GenericAdapter(SOURCE).signature_problem(settings, signed_headers(body), body) is None
        )
        assert GenericAdapter(OTHER).signature_problem(settings, signed_headers(body), body)


# --- the body -------------------------------------------------------------------------------

CTX = ParseContext(currency="KES", region="KE")


def parsed(doc: dict[str, Any] | bytes, ctx: ParseContext = CTX) -> PaymentNotification:
    result = GenericAdapter().parse(SOURCE, encoded(doc), ctx)
    assert isinstance(result, PaymentNotification)
    return result


class TestBody:
    def test_the_documented_body_is_a_payment_known_by_source_and_code(self) -> None:
        result = parsed(payment())
        assert result.provider == "generic"
        assert result.code == "isp-billing:INV-2026-0042"
        assert result.amount == 150000
        assert result.currency == "KES"
        assert result.paid_at.isoformat() == "2026-03-01T11:05:09+00:00"
        assert result.msisdn.e164 == "+254712345678"
        assert result.account_reference == "ACC-1001"
        assert result.payer_name == "Jane Doe"

    def test_optional_fields_may_be_left_out_or_null(self) -> None:
        result = parsed(payment(phone=..., account_reference=None, payer_name=...))
        assert result.msisdn.kind == "missing"
        assert (result.account_reference, result.payer_name) == (None, None)

    @pytest.mark.parametrize(
        ("amount", "minor"),
        [("1500", 150000), ("0.10", 10), (1500, 150000), (Decimal("99.99"), 9999), ("1e0", None)],
    )
    def test_amounts_are_exact_decimal_strings_or_json_numbers(
        self, amount: Any, minor: int | None
    ) -> None:
        body = json.dumps(payment(amount="__amount__")).replace(
            '"__amount__"', str(amount) if not isinstance(amount, str) else json.dumps(amount)
        )
        if minor is None:
            with pytest.raises(InvalidCallback) as raised:
                parsed(body.encode())
            assert raised.value.reason == "invalid_amount"
        else:
            assert parsed(body.encode()).amount == minor

    def test_a_json_fraction_is_never_a_float(self) -> None:
        body = encoded(payment(amount="__")).replace(b'"__"', b"0.30")
        assert parsed(body).amount == 30
        body = encoded(payment(amount="__")).replace(b'"__"', b"0.305")
        with pytest.raises(InvalidCallback, match="more than two decimal places"):
            parsed(body)

    def test_the_currency_must_be_momos_own(self) -> None:
        assert parsed(payment(currency="kes")).currency == "KES"
        with pytest.raises(InvalidCallback) as raised:
            parsed(payment(currency="UGX"))
        assert raised.value.reason == "wrong_currency"
        assert raised.value.message == (
            "currency 'UGX' is not 'KES', the only currency this momo takes (MOMO_CURRENCY); "
            "a payment in another currency is not credited"
        )
        ugx = ParseContext(currency="UGX", region="UG")
        assert parsed(payment(currency="UGX", phone="0772123456"), ugx).currency == "UGX"

    @pytest.mark.parametrize(
        ("phone", "region", "e164"),
        [
            ("0712345678", "KE", "+254712345678"),
            ("+254 712 345 678", "KE", "+254712345678"),
            ("254712345678", "KE", "+254712345678"),
            (254712345678, "KE", "+254712345678"),
            ("0772123456", "UG", "+256772123456"),
            # written with its country code: never forced into the default region
            ("+256772123456", "KE", "+256772123456"),
            ("256772123456", "KE", "+256772123456"),
            ("+254712345678", "UG", "+254712345678"),
        ],
    )
    def test_phones_are_read_in_the_default_region_unless_they_carry_a_country_code(
        self, phone: Any, region: str, e164: str
    ) -> None:
        ctx = ParseContext(currency="KES", region=region)
        assert parsed(payment(phone=phone), ctx).msisdn.e164 == e164

    def test_a_phone_that_is_no_number_is_kept_as_invalid_not_refused(self) -> None:
        result = parsed(payment(phone="12"))
        assert (result.msisdn.kind, result.msisdn.raw) == ("invalid", "12")

    @pytest.mark.parametrize(
        ("body", "reason", "says"),
        [
            (b"{", "invalid_json", "body is not valid JSON"),
            (b"\xff", "invalid_json", "body is not UTF-8"),
            (b"[]", "not_an_object", "body is a list; expected one JSON object"),
            (b'{"code": "A", "code": "B"}', "invalid_json", "more than once"),
            (payment(code=...), "missing_field", "required field code is missing or null"),
            (payment(amount=None), "missing_field", "required field amount is missing or null"),
            (payment(currency=...), "missing_field", "required field currency is missing"),
            (payment(paid_at=...), "missing_field", "required field paid_at is missing"),
            (payment(code="INV 1"), "invalid_code", "1-39 printable ASCII characters"),
            (payment(code=""), "invalid_code", "is not a payment code"),
            (payment(code=42), "invalid_code", "code 42 is not a payment code"),
            (payment(code="X" * (CODE_MAX + 1)), "invalid_code", "is not a payment code"),
            (payment(amount="-5"), "invalid_amount", "amount '-5' is not a plain decimal"),
            (payment(amount=0), "invalid_amount", "must be greater than zero"),
            (payment(amount=True), "invalid_amount", "is a boolean"),
            (payment(paid_at="2026-03-01T14:05:09"), "invalid_time", "with an offset"),
            (payment(paid_at="2026-03-01"), "invalid_time", "is not a time"),
            (payment(paid_at="20260301T140509Z"), "invalid_time", "is not a time"),
            (payment(paid_at="2026-02-30T14:05:09Z"), "invalid_time", "is not a real time"),
            (payment(paid_at="1999-12-31T23:59:59Z"), "invalid_time", "not a time a payment"),
            (payment(paid_at="2999-01-01T00:00:00Z"), "invalid_time", "not a time a payment"),
            (payment(paid_at=1767225600), "invalid_time", "paid_at 1767225600 is not a time"),
            (payment(phone=["0712345678"]), "invalid_field", "phone <a list> is a list"),
            (payment(payer_name=7), "invalid_field", "payer_name 7 is an integer"),
            (payment(payer_name="x" * 201), "invalid_field", "at most 200 characters"),
            (payment(account_reference="a\x00b"), "invalid_field", "account_reference"),
            (payment(account_reference=False), "invalid_field", "is a boolean"),
        ],
    )
    def test_a_body_not_of_the_documented_shape_says_what_is_wrong(
        self, body: dict[str, Any] | bytes, reason: str, says: str
    ) -> None:
        with pytest.raises(InvalidCallback) as raised:
            GenericAdapter().parse(SOURCE, encoded(body), CTX)
        assert raised.value.reason == reason
        assert says in raised.value.message

    def test_an_account_reference_may_be_a_json_integer(self) -> None:
        assert parsed(payment(account_reference=1001)).account_reference == "1001"

    def test_paid_at_may_be_utc_or_any_offset_with_fractions(self) -> None:
        assert parsed(payment(paid_at="2026-03-01t11:05:09.123456789z")).paid_at.isoformat() == (
            "2026-03-01T11:05:09.123456+00:00"
        )
        assert parsed(payment(paid_at="2026-03-01T06:05:09-05:00")).paid_at.isoformat() == (
            "2026-03-01T11:05:09+00:00"
        )

    def test_a_kind_that_is_no_source_is_refused(self) -> None:
        with pytest.raises(InvalidCallback) as raised:
            GenericAdapter().parse("c2b/confirmation", encoded(payment()), CTX)
        assert raised.value.reason == "unknown_kind"

    @given(st.binary(max_size=300))
    def test_any_body_is_a_payment_or_an_invalid_callback(self, body: bytes) -> None:
        with contextlib.suppress(InvalidCallback):
            GenericAdapter().parse(SOURCE, body, CTX)


# --- through the webhook edge ---------------------------------------------------------------


def generic_edge(make_edge: MakeEdge, fast_path: bool, name: str = "fast", **overrides: Any) -> Any:  # noqa: F811
    providers = {**mpesa_block(PATH_TOKEN), "generic": BLOCK}
    return make_edge(name, fast_path=fast_path, providers=providers, **overrides)


def post(
    edge: Any, body: bytes, headers: dict[str, str] | None = None, source: str = SOURCE
) -> Any:
    return edge.client.post(
        url(source),
        data=body,
        content_type="application/json",
        headers=signed_headers(body) if headers is None else headers,
    )


PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "flask-view"])


@PATHS
def test_a_signed_payment_is_kept_acknowledged_and_credited(
    make_edge: MakeEdge,  # noqa: F811
    fast_path: bool,
) -> None:
    edge = generic_edge(make_edge, fast_path)
    add_customer(edge.runtime, "ACC-1001", ["0700000001"])
    body = encoded(payment())

    answer = post(edge, body)

    assert answer.status_code == 200
    assert answer.get_json() == {"accepted": True}
    if fast_path:
        edge.assert_fast_path_answered()
    else:
        edge.assert_flask_answered()
    [row] = edge.rows()
    assert (row["provider"], row["kind"], row["code"], row["body"]) == (
        "generic",
        SOURCE,
        "isp-billing:INV-2026-0042",
        body,
    )
    assert drain_inbox(edge.runtime).outcomes == {"credited": 1}
    with edge.runtime.sessions() as session:
        [paid] = session.scalars(select(Payment))
        assert (paid.provider, paid.channel, paid.code, paid.amount_minor) == (
            "generic",
            "webhook",
            "isp-billing:INV-2026-0042",
            150000,
        )
        assert paid.customer is not None
        assert paid.customer.account_number == "ACC-1001"
        assert paid.customer.balance_minor == 150000


def test_the_fast_path_and_the_flask_view_answer_alike(make_edge: MakeEdge) -> None:  # noqa: F811
    fast = generic_edge(make_edge, True, "fast")
    flask = generic_edge(make_edge, False, "flask")
    body = encoded(payment())
    unsigned = {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time()))}
    cases: list[tuple[str, bytes, dict[str, str] | None]] = [
        (url(), body, None),
        (url(), body, unsigned),
        (url(), encoded(payment(amount="-1")), None),
        (url(), encoded(payment(currency="USD")), None),
        (url("nobody"), body, None),
        (url() + "/extra", body, None),
        (url() + "/", body, None),
        ("/webhooks/generic/", body, None),
        ("/webhooks/mpesa/" + PATH_TOKEN, body, None),
    ]
    for path, data, headers in cases:
        sent = signed_headers(data) if headers is None else headers
        answers = [
            edge.client.post(path, data=data, content_type="application/json", headers=sent)
            for edge in (fast, flask)
        ]
        same_answer(*answers)
    assert [r["reason"] for r in fast.rows()] == [r["reason"] for r in flask.rows()]
    assert fast.fast_answers == 1  # only the well-formed, signed payment; Flask did the rest


@PATHS
def test_a_bad_signature_or_timestamp_is_401_and_nothing_is_kept(
    make_edge: MakeEdge,  # noqa: F811
    fast_path: bool,
) -> None:
    edge = generic_edge(make_edge, fast_path)
    body = encoded(payment())
    tampered = encoded(payment(amount="15000.00"))
    stale = signed_headers(body, timestamp=int(time.time()) - TOLERANCE_SECONDS - 60)
    for data, headers in [
        (tampered, signed_headers(body)),
        (body, signed_headers(body, OTHER_KEY)),  # the aggregator's secret, not isp-billing's
        (body, stale),
        (body, {}),
    ]:
        answer = post(edge, data, headers)
        assert answer.status_code == 401
        assert answer.get_json()["accepted"] is False
        assert "webhook-" in answer.get_json()["error"]
    assert edge.rows() == []


@PATHS
def test_an_unknown_source_is_404_like_a_wrong_token_and_counts_toward_the_brake(
    make_edge: MakeEdge,  # noqa: F811
    fast_path: bool,
) -> None:
    edge = generic_edge(make_edge, fast_path, unauthenticated_per_minute=2)
    body = encoded(payment())
    statuses = [post(edge, body, source="nobody").status_code for _ in range(3)]
    assert statuses == [404, 404, 429]
    assert edge.rows() == []


@PATHS
def test_with_no_secrets_configured_the_generic_urls_answer_404(
    make_edge: MakeEdge,  # noqa: F811
    fast_path: bool,
) -> None:
    edge = make_edge(fast_path=fast_path)  # M-PESA only, as momo runs today
    body = encoded(payment())
    assert post(edge, body).status_code == 404
    assert edge.rows() == []


@PATHS
def test_only_its_own_path_and_method_are_its_callback_url(
    make_edge: MakeEdge,  # noqa: F811
    fast_path: bool,
) -> None:
    edge = generic_edge(make_edge, fast_path)
    body = encoded(payment())
    headers = signed_headers(body)
    assert edge.client.post(url() + "/payment", data=body, headers=headers).status_code == 404
    assert edge.client.put(url(), data=body, headers=headers).status_code == 405
    # M-PESA's URLs are as they were: a token and a kind, nothing shorter
    assert edge.client.post(f"/webhooks/mpesa/{PATH_TOKEN}", data=body).status_code == 404
    assert edge.rows() == []


@PATHS
def test_a_payment_in_another_currency_is_kept_as_rejected_saying_why(
    make_edge: MakeEdge,  # noqa: F811
    fast_path: bool,
) -> None:
    edge = generic_edge(make_edge, fast_path)
    answer = post(edge, encoded(payment(currency="USD")))
    assert answer.status_code == 400
    assert answer.get_json() == {
        "accepted": False,
        "error": "Rejected: currency 'USD' is not 'KES', the only currency this momo takes "
        "(MOMO_CURRENCY); a payment in another currency is not credited",
        "reason": "wrong_currency",
    }
    [row] = edge.rows()
    assert (row["status"], row["reason"]) == (INBOX_REJECTED, "wrong_currency")


def test_a_repeat_is_a_duplicate_and_another_source_never_collides(
    make_edge: MakeEdge,  # noqa: F811
) -> None:
    edge = generic_edge(make_edge, True)
    add_customer(edge.runtime, "ACC-1001", [])
    body = encoded(payment())
    assert post(edge, body).status_code == 200
    # the sender retries (a new attempt: a new timestamp, maybe a new message id)
    retry = signed_headers(body, message_id="msg_retry")
    assert post(edge, body, retry).status_code == 200
    # the aggregator's own INV-2026-0042 is another payment
    assert post(edge, body, signed_headers(body, OTHER_KEY), source=OTHER).status_code == 200

    assert drain_inbox(edge.runtime).outcomes == {"credited": 2, "duplicate": 1}
    with edge.runtime.sessions() as session:
        codes = sorted(session.scalars(select(Payment.code)))
        assert codes == ["aggregator:INV-2026-0042", "isp-billing:INV-2026-0042"]
        [item] = session.scalars(select(InboxItem).where(InboxItem.reason == "duplicate"))
        assert item.kind == SOURCE
        payments = session.scalars(select(Payment)).all()
        assert {p.customer.account_number for p in payments if p.customer} == {"ACC-1001"}
        # both sources' payments, each once: 2 x 1500.00
        assert payments[0].customer is not None
        assert payments[0].customer.balance_minor == 300000


@pytest.mark.parametrize(
    ("account_reference", "phone", "credited", "method"),
    [
        # the account reference first (trimmed, any case), whoever's phone paid
        (" acc-1001 ", "0722000002", "ACC-1001", "account_number"),
        # then a reference that is a customer's phone
        ("0722000002", None, "ACC-2002", "account_phone"),
        # then the payer's phone
        (None, "+254722000002", "ACC-2002", "phone"),
        ("no-such-account", "254722000002", "ACC-2002", "phone"),
    ],
)
def test_a_payment_is_matched_like_a_paybill_payment(
    make_edge: MakeEdge,  # noqa: F811
    account_reference: str | None,
    phone: str | None,
    credited: str,
    method: str,
) -> None:
    edge = generic_edge(make_edge, True)
    add_customer(edge.runtime, "ACC-1001", ["0711000001"])
    add_customer(edge.runtime, "ACC-2002", ["0722000002"])
    body = encoded(payment(account_reference=account_reference, phone=phone))
    assert post(edge, body).status_code == 200
    assert drain_inbox(edge.runtime).outcomes == {"credited": 1}
    with edge.runtime.sessions() as session:
        [paid] = session.scalars(select(Payment))
        assert paid.customer is not None
        assert (paid.customer.account_number, paid.match_method) == (credited, method)
