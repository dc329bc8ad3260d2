"""The provider seam holds: a provider added in tests alone is taken end to end.

``Acme`` is a made-up provider with its own path token, JSON body, acknowledgement and
error shape. Registering it (here, in a fixture) is all it takes for its callbacks to
be authenticated, stored, acknowledged in its words, and credited by the worker, on
both the fast path and the Flask view.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from core.providers import ParseContext, Registration
from ingest.providers import ADAPTERS
from ingest.providers.mpesa import parse_amount
from ingest.store import StoreFailed
from matcher.models import INBOX_PROCESSED, INBOX_REJECTED, InboxItem, Payment
from matcher.notifications import Callback, InvalidCallback, Msisdn, PaymentNotification
from matcher.phones import classify_msisdn
from tasks.work import drain_inbox
from tests.conftest import add_customer, make_token
from tests.unit.test_cli import database_url, env, serve  # noqa: F401 (fixtures)
from tests.unit.test_fast_path import MakeEdge, make_edge  # noqa: F401 (a fixture)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from core.config import IPNetwork, Settings

ACME_TOKEN = "acme-" + "k3" * 16
#: Acme signs each body: hex HMAC-SHA256 with this key, in X-Acme-Signature
ACME_KEY = b"acme-signing-key"
PAID = "paid"
ACK = {"ok": True, "message": "thanks"}


class AcmeAdapter:
    """Acme posts {"txn", "amount", "account", "phone"} to /webhooks/acme/<token>/paid."""

    name = "acme"
    kinds = frozenset({PAID})
    cancelled_codes: frozenset[int] = frozenset()
    variables: tuple[str, ...] = ("MOMO_ACME_PATH_TOKEN",)
    registration = Registration(
        title="Acme",
        a_title="an Acme",
        registrar="Acme's dashboard",
        token_variable="MOMO_ACME_PATH_TOKEN",
        token_file="acme_path_token",
    )

    def read_settings(self, environ: Mapping[str, str], settings: Settings) -> str | None:
        return environ.get("MOMO_ACME_PATH_TOKEN") or None

    def path_token(self, settings: Settings) -> str | None:
        return settings.providers.get(self.name) or ACME_TOKEN

    def require_path_token(self, settings: Settings) -> str:
        return self.path_token(settings) or ACME_TOKEN

    def with_path_token(self, settings: Settings, token: str) -> Settings:
        return settings.with_provider(self.name, token)

    def callback_paths(self, token: str) -> tuple[str, ...]:
        return (f"/webhooks/acme/{token}/{PAID}",)

    def allowed_networks(self, settings: Settings) -> tuple[IPNetwork, ...]:
        return ()

    methods = frozenset({"POST"})

    def signature_problem(
        self, settings: Settings, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        given = headers.get("X-Acme-Signature")
        if not given:
            return "X-Acme-Signature is missing"
        if not hmac.compare_digest(given, signed(body)["X-Acme-Signature"]):
            return "X-Acme-Signature does not match the body"
        return None

    def rejects_unknown_accounts(self, settings: Settings) -> bool:
        return False

    def refusal(self, status: int, message: str, **extra: str) -> dict[str, Any]:
        return {"ok": False, "error": message, "status": status, **extra}

    def receipt_code(self, reference: str) -> str | None:
        code = reference.strip().upper()
        return code if code.startswith("ACME-") else None

    def parse(self, kind: str, body: bytes, ctx: ParseContext) -> Callback:
        try:
            doc = json.loads(body)
        except ValueError:
            raise InvalidCallback("the body is not JSON", "invalid_json") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("txn"), str):
            raise InvalidCallback("txn is missing", "missing_field")
        phone = doc.get("phone")
        return PaymentNotification(
            provider=self.name,
            channel="wallet",
            code=doc["txn"],
            amount=parse_amount(doc.get("amount"), "amount"),
            currency=ctx.currency,
            paid_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            msisdn=Msisdn(raw=phone, kind="missing")
            if ctx.shape_only
            else classify_msisdn(phone, ctx.region),
            account_reference=doc.get("account"),
        )

    def acknowledge(self, kind: str) -> dict[str, Any]:
        return dict(ACK)

    def validation_reply(self, accepted: bool) -> dict[str, Any]:
        return {"ok": accepted}


@pytest.fixture(autouse=True)
def acme(monkeypatch: pytest.MonkeyPatch) -> AcmeAdapter:
    adapter = AcmeAdapter()
    monkeypatch.setitem(ADAPTERS, adapter.name, adapter)
    return adapter


def signed(data: bytes | str) -> dict[str, str]:
    raw = data.encode() if isinstance(data, str) else data
    return {"X-Acme-Signature": hmac.new(ACME_KEY, raw, hashlib.sha256).hexdigest()}


def acme_url(token: str = ACME_TOKEN, kind: str = PAID) -> str:
    return f"/webhooks/acme/{token}/{kind}"


def body(txn: str = "ACME-0001", amount: str = "250.00") -> bytes:
    doc = {"txn": txn, "amount": amount, "account": "ACC7", "phone": "0712345678"}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "flask-view"])
def test_a_registered_provider_is_taken_from_webhook_to_credit(
    make_edge: MakeEdge,  # noqa: F811 (the imported fixture)
    fast_path: bool,
) -> None:
    edge = make_edge(fast_path=fast_path)
    add_customer(edge.runtime, "ACC7", [])

    answer = edge.client.post(
        acme_url(), data=body(), content_type="application/json", headers=signed(body())
    )

    assert answer.status_code == 200
    assert answer.get_json() == ACK
    if fast_path:
        edge.assert_fast_path_answered()
    else:
        edge.assert_flask_answered()
    assert edge.nudges == 1

    result = drain_inbox(edge.runtime)
    assert result.outcomes == {"credited": 1}
    with edge.runtime.sessions() as session:
        [item] = session.scalars(select(InboxItem))
        assert (item.provider, item.kind, item.status) == ("acme", PAID, INBOX_PROCESSED)
        [payment] = session.scalars(select(Payment))
        assert (payment.provider, payment.code, payment.amount_minor) == (
            "acme",
            "ACME-0001",
            25000,
        )
        assert payment.customer is not None
        assert payment.customer.account_number == "ACC7"
        assert payment.customer.balance_minor == 25000


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "flask-view"])
def test_a_registered_provider_answers_refusals_in_its_own_shape(
    make_edge: MakeEdge,  # noqa: F811 (the imported fixture)
    fast_path: bool,
) -> None:
    edge = make_edge(fast_path=fast_path)

    malformed = edge.client.post(
        acme_url(), data=b"[1]", content_type="application/json", headers=signed(b"[1]")
    )
    assert malformed.status_code == 400
    assert malformed.get_json() == {
        "ok": False,
        "error": "Rejected: txn is missing",
        "status": 400,
        "reason": "missing_field",
    }
    # its token is its own: M-PESA's does not open Acme's path, nor Acme's M-PESA's
    wrong = edge.client.post(acme_url(token="nope"), data=body())
    assert wrong.status_code == 404
    assert wrong.get_json()["ok"] is False
    assert wrong.get_json()["status"] == 404
    crossed = edge.client.post(f"/webhooks/mpesa/{ACME_TOKEN}/c2b/confirmation", data=body())
    assert crossed.status_code == 404
    assert "ResultCode" in crossed.get_json()

    with edge.runtime.sessions() as session:
        [item] = session.scalars(select(InboxItem))
        assert (item.provider, item.status, item.reason) == (
            "acme",
            INBOX_REJECTED,
            "missing_field",
        )


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "flask-view"])
def test_a_registered_provider_is_answered_503_in_its_shape_when_nothing_can_store(
    make_edge: MakeEdge,  # noqa: F811 (the imported fixture)
    fast_path: bool,
) -> None:
    edge = make_edge(fast_path=fast_path)
    edge.refuse_writes(StoreFailed("could not connect"))
    answer = edge.client.post(
        acme_url(), data=body(), content_type="application/json", headers=signed(body())
    )
    assert answer.status_code == 503
    assert answer.get_json() == {
        "ok": False,
        "error": "Temporarily unavailable, not accepted",
        "status": 503,
    }


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "flask-view"])
def test_a_callback_its_provider_did_not_sign_is_refused_and_nothing_is_kept(
    make_edge: MakeEdge,  # noqa: F811 (the imported fixture)
    fast_path: bool,
) -> None:
    edge = make_edge(fast_path=fast_path)
    tampered = body(amount="2500.00")
    for headers in (signed(body()), {}):
        answer = edge.client.post(
            acme_url(), data=tampered, content_type="application/json", headers=headers
        )
        assert answer.status_code == 401
        assert answer.get_json()["ok"] is False
        assert "X-Acme-Signature" in answer.get_json()["error"]
    put = edge.client.put(acme_url(), data=body(), headers=signed(body()))
    assert put.status_code == 405  # Acme posts; another method is not its callback
    with edge.runtime.sessions() as session:
        assert session.scalars(select(InboxItem)).all() == []


def test_an_operator_typing_a_registered_providers_receipt_claims_its_callback(
    make_edge: MakeEdge,  # noqa: F811 (the imported fixture)
) -> None:
    edge = make_edge()
    add_customer(edge.runtime, "ACC7", [])
    doc = {"txn": "ACME-0002", "amount": "250.00", "account": "NOBODY", "phone": None}
    answer = edge.client.post(
        acme_url(),
        data=json.dumps(doc),
        content_type="application/json",
        headers=signed(json.dumps(doc)),
    )
    assert answer.status_code == 200
    assert drain_inbox(edge.runtime).outcomes == {"unassociated": 1}

    headers = {"Authorization": f"Bearer {make_token(edge.runtime, 'operator')}"}
    recorded = edge.client.post(
        "/api/v1/payments",
        json={"account_number": "ACC7", "amount": "250.00", "reference": "acme-0002"},
        headers=headers,
    )

    assert recorded.status_code == 200, recorded.get_data(as_text=True)  # claimed, not created
    with edge.runtime.sessions() as session:
        [payment] = session.scalars(select(Payment))
        assert (payment.provider, payment.code) == ("acme", "ACME-0002")
        assert payment.customer is not None
        assert payment.customer.balance_minor == 25000


def test_momo_serve_shows_a_registered_providers_callback_urls_in_its_words(
    serve: Any,  # noqa: F811 (the imported fixture)
) -> None:
    result = serve(MOMO_ACME_PATH_TOKEN=ACME_TOKEN)

    assert result.exit_code == 0, result.output
    assert (
        "Acme callback URLs (register these with Acme's dashboard, behind HTTPS):\n"
        "  http://127.0.0.1:8123/webhooks/acme/<path token>/paid\n"
        "  (the path token is MOMO_ACME_PATH_TOKEN's value; logs show it as ***)\n"
    ) in result.output
    assert ACME_TOKEN not in result.output
    assert "M-PESA callback URLs" in result.output  # beside the other providers'
