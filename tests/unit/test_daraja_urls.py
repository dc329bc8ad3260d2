"""The callback URLs momo gives for M-PESA are ones Daraja registers; the URLs registered
before them keep working, and both store the same provider's callbacks."""

from __future__ import annotations

import pytest

from ingest.providers.mpesa import MpesaAdapter, daraja_url_problem
from tests.conftest import PATH_TOKEN, sample_bytes
from tests.unit.test_fast_path import MakeEdge, make_edge  # noqa: F401 (a fixture)

HOST = "https://pay.example.com"


def test_the_urls_momo_gives_pass_darajas_check() -> None:
    for path in MpesaAdapter().callback_paths("3f9a1c0e5b7d2e8f4a6c1b9d0e7f2a5c8b3d6e1f4a7c0b9d"):
        assert daraja_url_problem(HOST + path) is None, path


@pytest.mark.parametrize(
    ("url", "word"),
    [
        (f"{HOST}/webhooks/mpesa/t/c2b/confirmation", "mpesa"),
        ("https://M-PESA.example.com/c", "m-pesa"),
        ("https://pay.example.com/Safaricom/c", "safaricom"),
        ("https://pay.example.com/run.exe", "exe"),
        ("https://pay.example.com/EXEC/c", "exec"),
        ("https://pay.example.com/cmd", "cmd"),
        ("https://pay.example.com/mysql/c", "sql"),
        ("https://pay.example.com/c?query=1", "query"),
    ],
)
def test_a_word_daraja_refuses_is_named(url: str, word: str) -> None:
    problem = daraja_url_problem(url)
    assert problem is not None and repr(word) in problem


def test_plain_http_only_in_the_sandbox() -> None:
    url = "http://pay.example.com/webhooks/daraja/t/c2b/confirmation"
    assert "https" in (daraja_url_problem(url) or "")
    assert daraja_url_problem(url, sandbox=True) is None


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "flask-view"])
@pytest.mark.parametrize("name", ["daraja", "mpesa"])
def test_both_urls_take_m_pesas_callbacks(
    make_edge: MakeEdge,  # noqa: F811 (the imported fixture)
    fast_path: bool,
    name: str,
) -> None:
    edge = make_edge(fast_path=fast_path)
    answer = edge.client.post(
        f"/webhooks/{name}/{PATH_TOKEN}/c2b/confirmation",
        data=sample_bytes("c2b_confirmation_paybill_plain.json"),
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["ResultCode"] == 0
    [row] = edge.rows()
    assert (row["provider"], row["kind"]) == ("mpesa", "c2b/confirmation")
    if fast_path:
        edge.assert_fast_path_answered()
    wrong = edge.client.post(
        f"/webhooks/{name}/not-the-token-0123456789abcdef/c2b/confirmation",
        data=b"{}",
        content_type="application/json",
    )
    assert wrong.status_code == 404
