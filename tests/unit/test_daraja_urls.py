"""The callback URLs momo gives for M-PESA are ones Daraja registers; the URLs registered
before them keep working, and both store the same provider's callbacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.providers import variables
from ingest.providers.mpesa import MpesaAdapter, daraja_url_problem
from momo.cli import main
from tests.conftest import PATH_TOKEN, ROOT, sample_bytes
from tests.unit.test_fast_path import MakeEdge, make_edge  # noqa: F401 (a fixture)

HOST = "https://pay.example.com"
#: a URL, or a path, that goes through /webhooks/ (in prose, markdown or a shell line);
#: a <placeholder> may hold spaces
_PART = r"(?:<[^>\n]*>|[^\s\"'`()<])*"
WEBHOOK_URL = re.compile(_PART + "/webhooks/" + _PART)
#: README names the form registered before once, on purpose: it still takes callbacks
OLD_FORM = "/webhooks/mpesa/..."


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


def registrable(url: str) -> str | None:
    """Daraja's verdict on ``url`` as given: a path or a template is put under an https
    host; a loopback http URL (trying momo out) is judged by the sandbox's rules."""
    if not url.startswith(("http://", "https://")):
        url = HOST + url[url.index("/webhooks/") :]
    return daraja_url_problem(url, sandbox=url.startswith("http://127.0.0.1"))


@pytest.mark.parametrize("configured", [False, True], ids=["generated", "configured"])
def test_every_m_pesa_url_momo_serve_prints_is_one_daraja_registers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    from momo import serving
    from tests.unit.test_cli import CONFIGURED_TOKEN, StoppedServer

    monkeypatch.setattr(serving, "make_server", lambda *a, **k: StoppedServer())
    env: dict[str, str | None] = dict.fromkeys(variables())
    env["MOMO_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    env["MOMO_INSTANCE_PATH"] = str(tmp_path / "instance")
    if configured:
        env["MOMO_MPESA_PATH_TOKEN"] = CONFIGURED_TOKEN
    for start in ("first", "again"):  # the token is shown the first time only
        result = CliRunner().invoke(main, ["serve", "--port", "8123"], env=env)
        assert result.exit_code == 0, result.output
        lines = result.output.split("M-PESA callback URLs", 1)[1].splitlines()[1:4]
        assert len(lines) == 3 and all("/webhooks/daraja/" in line for line in lines), lines
        for url in (line.strip() for line in lines):
            assert daraja_url_problem(url, sandbox=True) is None, (start, url)
            behind_https = url.replace("http://127.0.0.1:8123", HOST)
            assert daraja_url_problem(behind_https) is None, (start, url)


def test_every_webhook_url_in_readme_is_one_daraja_registers() -> None:
    readme = (ROOT / "README.md").read_text()
    urls = WEBHOOK_URL.findall(readme)
    assert len(urls) >= 5  # the URLs to register, the curl examples, the other providers
    for url in urls:
        if url == OLD_FORM:
            continue
        assert registrable(url) is None, url
    # the old form is named as still working, not as a URL to register
    assert re.search(r"`/webhooks/mpesa/\.\.\.`\s+keep\s+working", readme)
