"""api.console: the console's files are served by the API app and by `momo serve`'s app,
under a policy that lets them talk only to their own origin, and ship in the package."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from flask import Flask

from api.console import STATIC
from core.runtime import Runtime
from momo.app import create_api_app, create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["api", "serve"])
def any_app(request: pytest.FixtureRequest, runtime: Runtime) -> Flask:
    """Procfile's ``api`` app and the app `momo serve` and ``momo.wsgi:app()`` run."""
    app = create_api_app(runtime=runtime) if request.param == "api" else create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app


class TestServed:
    @pytest.mark.parametrize("path", ["/console", "/console/"])
    def test_the_page_is_served_with_its_policy(self, any_app: Flask, path: str) -> None:
        with any_app.test_client().get(path) as answer:
            text = answer.text

        assert answer.status_code == 200
        assert answer.mimetype == "text/html"
        assert '<script type="module" src="/console/static/console.js">' in text
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["Cache-Control"] == "no-cache"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"

    def test_every_file_the_page_names_is_served_with_its_type(self, any_app: Flask) -> None:
        client = any_app.test_client()
        with client.get("/console") as answer:
            page = answer.text
        named = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page)
        assert "/console/static/console.js" in named
        # every style sheet shipped is linked (a page's own one forgotten would show unstyled)
        assert {p for p in named if p.endswith(".css")} == {
            f"/console/static/{sheet.name}" for sheet in STATIC.glob("*.css")
        }
        for path in named:
            with client.get(path) as answer:
                assert answer.data
            assert answer.status_code == 200, path
            expected = "text/css" if path.endswith(".css") else "javascript"
            assert expected in answer.mimetype, (path, answer.mimetype)
            assert "Content-Security-Policy" in answer.headers

    def test_every_module_import_names_a_shipped_file(self) -> None:
        for script in STATIC.glob("*.js"):
            for name in re.findall(r'from "\./([^"]+)"', script.read_text()):
                assert (STATIC / name).is_file(), (script.name, name)

    def test_a_missing_file_is_a_404(self, any_app: Flask) -> None:
        with any_app.test_client().get("/console/static/nothing.js") as answer:
            assert answer.status_code == 404


class TestBuiltOnThePublicApi:
    def test_only_the_api_module_calls_the_server_and_only_under_api_v1(self) -> None:
        callers = [p.name for p in STATIC.glob("*.js") if "fetch(" in p.read_text()]
        assert callers == ["api.js"]
        assert 'const BASE = "/api/v1";' in (STATIC / "api.js").read_text()
        for script in STATIC.glob("*.js"):
            paths = re.findall(r'call\("[A-Z]+", `?"?(/[^`"?$]*)', script.read_text())
            for path in paths:
                assert not path.startswith("/api"), (script.name, path)

    def test_the_token_is_kept_for_the_tab_only(self) -> None:
        code = "".join(p.read_text() for p in STATIC.glob("*.js"))
        assert "sessionStorage" in code
        assert "localStorage" not in code and "document.cookie" not in code


def test_the_package_data_carries_every_console_file() -> None:
    """A non-editable install has only the files pyproject names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["api"]
    shipped = sorted(p.relative_to(ROOT / "api").as_posix() for p in STATIC.iterdir())
    assert shipped
    for name in shipped:
        assert any(fnmatch(name, pattern) for pattern in patterns), name


def test_every_picture_in_readme_is_copied_from_a_browser_test_s_screenshot() -> None:
    from tests.browser.pictures import PICTURES

    shown = set(re.findall(r"\]\(docs/console/([\w.-]+\.png)\)", (ROOT / "README.md").read_text()))
    assert shown == set(PICTURES)
    tests = "".join(path.read_text() for path in (ROOT / "tests" / "browser").glob("test_*.py"))
    for source in PICTURES.values():
        test, shot = re.fullmatch(r"(test_\w+?)(?:-\w+)?-\d+-([\w-]+)\.png", source).groups()
        assert f"def {test}(" in tests, source
        assert f'"{shot}")' in tests, source
