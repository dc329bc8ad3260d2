"""momo.wsgi: what gunicorn loads. A production set-up that would quietly run on the embedded
default's SQLite file does not start, and a web process says which directories it uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from gunicorn.errors import AppImportError

from core.config import Settings
from momo import wsgi
from momo.app import create_webhook_app
from tests.conftest import PATH_TOKEN, mpesa_block


@pytest.mark.parametrize("entry", [wsgi.web, wsgi.api, wsgi.app], ids=["web", "api", "app"])
def test_a_broker_without_a_database_url_stops_every_entry_point_naming_the_variable(
    entry: Callable[[], Flask], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOMO_DATABASE_URL", raising=False)
    monkeypatch.setenv("MOMO_DATABSE_URL", "postgresql://momo:Sup3rS3cret@db/momo")
    monkeypatch.setenv("MOMO_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("MOMO_MPESA_PATH_TOKEN", PATH_TOKEN)
    monkeypatch.setenv("MOMO_INSTANCE_PATH", str(tmp_path / "instance"))

    with pytest.raises(AppImportError) as info:
        entry()

    message = str(info.value)
    assert "MOMO_DATABASE_URL is not set (MOMO_DATABSE_URL is set: a misspelling?)" in message
    assert "Sup3rS3cret" not in message
    assert not (tmp_path / "momo.db").exists()


class TestPathsLoggedAtStart:
    def build(self, tmp_path: Path, **changes: object) -> None:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'momo.db'}",
            providers=mpesa_block(PATH_TOKEN),
            **changes,  # type: ignore[arg-type]
        )
        app = create_webhook_app(settings=settings)
        app.extensions["momo"].close()

    def test_a_relative_spool_dir_with_a_broker_is_a_warning_giving_the_absolute_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.chdir(tmp_path)
        with caplog.at_level("INFO", logger="ingest.app"):
            self.build(
                tmp_path,
                broker_url="redis://127.0.0.1:1/0",
                spool_dir=Path("var/spool"),
                instance_path=tmp_path / "instance",
            )

        [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
        message = warning.getMessage()
        assert message.startswith("MOMO_SPOOL_DIR is the relative path 'var/spool'")
        assert f"this process uses {tmp_path / 'var' / 'spool'}" in message
        assert f"as it started in {tmp_path}" in message
        infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
        assert f"MOMO_INSTANCE_PATH: {tmp_path / 'instance'}" in infos

    def test_the_embedded_default_logs_its_absolute_paths_without_a_warning(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.chdir(tmp_path)
        with caplog.at_level("INFO", logger="ingest.app"):
            self.build(tmp_path)

        assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert str(tmp_path / "instance" / "spool") in messages
        assert str(tmp_path / "instance") in messages
