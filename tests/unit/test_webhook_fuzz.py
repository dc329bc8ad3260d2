"""Random and mutated callbacks against the webhook: never a 5xx, never a credit from a
malformed body, every rejected body kept with its reason."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.config import Settings
from ingest.providers import build_runtime
from matcher.db import make_engine
from matcher.migrate import upgrade
from matcher.models import Customer, InboxItem, Payment
from momo.app import create_app
from tasks.work import drain_inbox
from tests.conftest import PATH_TOKEN, add_customer, mpesa_block, sample, webhook_url

KINDS = ("c2b/confirmation", "c2b/validation", "stk")
TEMPLATES = {
    "c2b/confirmation": sample("c2b_confirmation_paybill_plain.json"),
    "c2b/validation": sample("c2b_validation.json"),
    "stk": sample("stk_callback_success.json"),
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    """A real body with a few keys dropped, replaced or added, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    body: Any = json.loads(json.dumps(TEMPLATES[kind]))
    target = body["Body"]["stkCallback"] if kind == "stk" else body
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "replace", "add", "metadata"]))
        keys = sorted(target)
        if action == "drop" and keys:
            target.pop(draw(st.sampled_from(keys)))
        elif action == "replace" and keys:
            target[draw(st.sampled_from(keys))] = draw(json_values)
        elif action == "add":
            target[draw(st.text(max_size=12))] = draw(json_values)
        elif kind == "stk" and isinstance(target.get("CallbackMetadata"), dict):
            items = target["CallbackMetadata"].get("Item")
            if isinstance(items, list) and items:
                index = draw(st.integers(0, len(items) - 1))
                items[index] = {"Name": items[index].get("Name"), "Value": draw(json_values)}
    return json.dumps(body).encode()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(data=st.data())
def test_no_body_makes_a_5xx_or_a_credit_it_should_not(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'fuzz.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        runtime = build_runtime(
            Settings(database_url=url, providers=mpesa_block(PATH_TOKEN), instance_path=Path(tmp))
        )
        try:
            add_customer(runtime, "ACC1042", ["0712345678"])
            client = create_app(runtime=runtime).test_client()
            sent: list[tuple[str, bytes, int]] = []
            for _ in range(data.draw(st.integers(1, 4))):
                kind = data.draw(st.sampled_from(KINDS))
                body = data.draw(mutated(kind))
                response = client.post(
                    webhook_url(kind), data=body, content_type="application/json"
                )
                assert response.status_code < 500, (kind, body, response.get_data())
                assert response.status_code in (200, 400), response.status_code
                sent.append((kind, body, response.status_code))
            drain_inbox(runtime)
            with runtime.sessions.begin() as session:
                rows = session.scalars(select(InboxItem).order_by(InboxItem.id)).all()
                assert len(rows) == len(sent)  # every body kept, accepted or not
                for row, (_kind, body, status) in zip(rows, sent, strict=True):
                    assert row.body == body
                    if status == 400:
                        assert row.status == "rejected"
                        assert row.reason and row.detail
                    else:
                        assert row.status in ("processed", "conflict"), (row.status, row.detail)
                credited = session.scalar(
                    select(func.coalesce(func.sum(Payment.amount_minor), 0)).where(
                        Payment.status == "associated"
                    )
                )
                accepted = [r for r in rows if r.status != "rejected"]
                linked = {r.payment_id for r in accepted if r.payment_id}
                # every payment came from an accepted body, and the balance is exactly theirs
                assert session.scalar(select(func.count()).select_from(Payment)) == len(linked)
                assert session.scalar(select(Customer.balance_minor)) == credited
        finally:
            runtime.close()
