"""The two reads the console needs beside the lists: who the token is, and a list's size."""

from __future__ import annotations

from flask.testing import FlaskClient

from core.runtime import Runtime
from tests.conftest import PROBLEM, add_customer, make_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestShowMe:
    def test_a_token_learns_its_own_name_and_role_and_the_business_zone(
        self, client: FlaskClient, runtime: Runtime
    ) -> None:
        for role in ("viewer", "operator", "admin"):
            answer = client.get(
                "/api/v1/me", headers=bearer(make_token(runtime, role, f"t-{role}"))
            )

            assert answer.status_code == 200
            body = answer.get_json()
            assert (body["name"], body["role"]) == (f"t-{role}", role)
            assert body["timezone"] == runtime.settings.timezone == "Africa/Nairobi"
            assert body["currency"] == "KES"
            assert "token" not in body and "token_hash" not in body

    def test_an_unknown_token_is_refused(self, client: FlaskClient) -> None:
        answer = client.get("/api/v1/me", headers=bearer("momo_nothing"))

        assert answer.status_code == 401
        assert answer.mimetype == PROBLEM

    def test_a_revoked_token_is_refused(self, client: FlaskClient, runtime: Runtime) -> None:
        admin = bearer(make_token(runtime, "admin"))
        token = make_token(runtime, "viewer", "leaving")
        ident = client.get("/api/v1/me", headers=bearer(token)).get_json()["id"]

        assert client.delete(f"/api/v1/tokens/{ident}", headers=admin).status_code == 200
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


class TestCountPayments:
    def test_each_list_counts_its_own_payments(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1", ["0712345678"])
        ids = []
        for amount in ("10.00", "20.00", "30.00"):
            made = client.post(
                "/api/v1/payments",
                headers=operator_headers,
                json={"account_number": "ACC1", "amount": amount},
            )
            assert made.status_code == 201, made.get_json()
            ids.append(made.get_json()["id"])
        gone = client.post(f"/api/v1/payments/{ids[0]}/disassociate", headers=operator_headers)
        assert gone.status_code == 200

        viewer = bearer(make_token(runtime, "viewer"))
        counted = {
            status: client.get(f"/api/v1/payments/count?status={status}", headers=viewer)
            for status in ("associated", "unassociated")
        }

        assert counted["associated"].get_json() == {"status": "associated", "count": 2}
        assert counted["unassociated"].get_json() == {"status": "unassociated", "count": 1}
        default = client.get("/api/v1/payments/count", headers=viewer).get_json()
        assert default == {"status": "associated", "count": 2}

    def test_an_empty_database_counts_zero(
        self, client: FlaskClient, operator_headers: dict[str, str]
    ) -> None:
        answer = client.get("/api/v1/payments/count?status=unassociated", headers=operator_headers)

        assert answer.get_json() == {"status": "unassociated", "count": 0}

    def test_another_status_is_a_400_naming_the_choices(
        self, client: FlaskClient, operator_headers: dict[str, str]
    ) -> None:
        answer = client.get("/api/v1/payments/count?status=pending", headers=operator_headers)

        assert answer.status_code == 400
        assert answer.get_json()["code"] == "invalid_status"
        assert "'associated' or 'unassociated'" in answer.get_json()["detail"]

    def test_a_payment_is_still_found_by_id(
        self, client: FlaskClient, runtime: Runtime, operator_headers: dict[str, str]
    ) -> None:
        add_customer(runtime, "ACC1", [])
        made = client.post(
            "/api/v1/payments",
            headers=operator_headers,
            json={"account_number": "ACC1", "amount": "5.00"},
        ).get_json()

        shown = client.get(f"/api/v1/payments/{made['id']}", headers=operator_headers)

        assert shown.status_code == 200 and shown.get_json()["amount"] == "5.00"
