"""Fake provider servers for tests: Daraja (M-PESA Express), Airtel Money, MTN MoMo.

Each is a real HTTP server on 127.0.0.1 that speaks the provider's outbound API and
posts its callbacks; see tests/fakes/README.md for the endpoints and controls.

    with DarajaFake() as daraja:
        daraja.will(StkResult(code=1032))  # the customer cancels
        ...  # point the client at daraja.base_url
"""

from tests.fakes.airtel import AirtelFake, AirtelResult
from tests.fakes.base import (
    AT_ONCE,
    HELD,
    NEVER,
    PAY,
    QUERY,
    TOKEN,
    TWICE,
    Delivery,
    FakeProvider,
    Outcome,
    Recorded,
    Reply,
    Transaction,
)
from tests.fakes.daraja import REVERSAL, STATUS, DarajaFake, StkResult
from tests.fakes.mtn import MtnFake, MtnResult

__all__ = [
    "AT_ONCE",
    "HELD",
    "NEVER",
    "PAY",
    "QUERY",
    "REVERSAL",
    "STATUS",
    "TOKEN",
    "TWICE",
    "AirtelFake",
    "AirtelResult",
    "DarajaFake",
    "Delivery",
    "FakeProvider",
    "MtnFake",
    "MtnResult",
    "Outcome",
    "Recorded",
    "Reply",
    "StkResult",
    "Transaction",
]
