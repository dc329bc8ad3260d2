"""Plans, and vouchers bought from a balance."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from matcher.audit import audit
from matcher.db import utcnow
from matcher.errors import Conflict, InvalidInput, NotFound
from matcher.ledger import PURCHASE, Ledger, Posting
from matcher.matching import account_key
from matcher.models import Customer, Plan, Purchase
from matcher.money import format_minor, parse_money

PLAN_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
#: no 0/O or 1/I: customers read voucher codes off a screen and type them in
VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
VOUCHER_LENGTH = 10
MAX_VALIDITY_MINUTES = 366 * 24 * 60


@dataclass(frozen=True)
class Bought:
    purchase: Purchase
    plan: Plan
    customer: Customer


def plan_state(plan: Plan) -> dict[str, object]:
    return {
        "code": plan.code,
        "name": plan.name,
        "price": format_minor(plan.price_minor),
        "validity_minutes": plan.validity_minutes,
        "active": plan.active,
    }


def _validity(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_VALIDITY_MINUTES:
        raise InvalidInput(
            f"validity_minutes must be a whole number from 1 to {MAX_VALIDITY_MINUTES}, "
            "e.g. 1440 for a day",
            "invalid_validity",
        )
    return raw


def _name(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw.strip()) > 200:
        raise InvalidInput("name must be text of 1 to 200 characters", "invalid_name")
    return raw.strip()


def get_plan(session: Session, code: str, *, lock: bool = False) -> Plan:
    query = select(Plan).where(Plan.code == code)
    if lock:
        query = query.with_for_update()
    plan = session.scalar(query)
    if plan is None:
        raise NotFound(f"no plan has code {code!r}", "plan_not_found")
    return plan


def create_plan(
    session: Session,
    *,
    code: object,
    name: object,
    price: object,
    validity_minutes: object,
    actor: str,
) -> Plan:
    if not isinstance(code, str) or not PLAN_CODE.fullmatch(code.strip()):
        raise InvalidInput(
            "code must be 1 to 32 letters, digits, '.', '_' or '-', e.g. DAY-1GB", "invalid_code"
        )
    plan = Plan(
        code=code.strip(),
        name=_name(name),
        price_minor=parse_money(price, "price"),
        validity_minutes=_validity(validity_minutes),
        active=True,
    )
    if session.scalar(select(Plan.id).where(Plan.code == plan.code)) is not None:
        raise Conflict(f"a plan with code {plan.code!r} already exists", "plan_exists")
    session.add(plan)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a plan with code {plan.code!r} already exists", "plan_exists") from None
    audit(
        session,
        actor=actor,
        action="plan.create",
        subject_type="plan",
        subject_id=plan.code,
        before=None,
        after=plan_state(plan),
    )
    return plan


def update_plan(session: Session, code: str, changes: dict[str, object], *, actor: str) -> Plan:
    plan = get_plan(session, code, lock=True)
    before = plan_state(plan)
    unknown = set(changes) - {"name", "price", "validity_minutes", "active"}
    if unknown:
        raise InvalidInput(
            f"cannot change {', '.join(sorted(unknown))}; a plan's name, price, "
            "validity_minutes and active can be changed",
            "invalid_field",
        )
    if "name" in changes:
        plan.name = _name(changes["name"])
    if "price" in changes:
        plan.price_minor = parse_money(changes["price"], "price")
    if "validity_minutes" in changes:
        plan.validity_minutes = _validity(changes["validity_minutes"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise InvalidInput("active must be true or false", "invalid_active")
        plan.active = changes["active"]
    session.flush()
    audit(
        session,
        actor=actor,
        action="plan.update",
        subject_type="plan",
        subject_id=plan.code,
        before=before,
        after=plan_state(plan),
    )
    return plan


def _voucher_code() -> str:
    return "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(VOUCHER_LENGTH))


def purchase(session: Session, account_number: str, plan_code: object, *, actor: str) -> Bought:
    """Buy a plan from the balance, never overdrawing it.

    The customer row is locked first, so concurrent purchases by one customer
    run one after another and each sees the balance the previous one left.
    """
    if not isinstance(plan_code, str) or not plan_code.strip():
        raise InvalidInput(
            'plan is required: the code of a plan, e.g. {"plan": "DAY-1GB"}', "invalid_plan"
        )
    customer = session.scalar(
        select(Customer)
        .where(Customer.account_key == account_key(account_number))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if customer is None:
        raise NotFound(
            f"no customer has account number {account_number.strip()!r}", "customer_not_found"
        )
    plan = get_plan(session, plan_code.strip())
    if not plan.active:
        raise Conflict(f"plan {plan.code!r} is no longer sold", "plan_inactive")
    if customer.balance_minor < plan.price_minor:
        raise Conflict(
            f"Insufficient balance: available {format_minor(customer.balance_minor)}, "
            f"required {format_minor(plan.price_minor)}",
            "insufficient_balance",
        )
    now = utcnow()
    bought = Purchase(
        customer_id=customer.id,
        plan_id=plan.id,
        plan_code=plan.code,
        price_minor=plan.price_minor,
        voucher_code=_voucher_code(),
        valid_until=now + timedelta(minutes=plan.validity_minutes),
        created_by=actor,
        created_at=now,
    )
    for attempt in range(3):
        try:
            with session.begin_nested():
                session.add(bought)
                session.flush()
            break
        except IntegrityError:  # a voucher code drawn twice: draw again
            if attempt == 2:
                raise
            bought.voucher_code = _voucher_code()
    with Ledger(session) as ledger:
        ledger.post(
            Posting(
                customer_id=customer.id,
                amount=-plan.price_minor,
                kind=PURCHASE,
                idempotency_key=f"purchase:{bought.id}",
                created_by=actor,
                purchase_id=bought.id,
                note=f"{plan.code} voucher {bought.voucher_code}",
            )
        )
    audit(
        session,
        actor=actor,
        action="customer.purchase",
        subject_type="customer",
        subject_id=customer.account_number,
        before={"balance": format_minor(customer.balance_minor)},
        after={
            "balance": format_minor(customer.balance_minor - plan.price_minor),
            "plan": plan.code,
            "voucher_code": bought.voucher_code,
        },
    )
    session.refresh(customer)
    return Bought(bought, plan, customer)
