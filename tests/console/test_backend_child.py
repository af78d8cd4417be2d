"""`tokenmill` with no backend running starts one (serve --local) and stops it cleanly."""

from __future__ import annotations

from backend.settings import load_settings
from console.backend_child import BackendChild, answers, status
from tests.ports import free_port


def test_starts_a_local_backend_and_stops_it(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("TOKENMILL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOKENMILL_ADMIN_PORT", str(port))
    settings = load_settings()
    token = settings.ensure_admin_token()
    assert not answers(settings.admin_url, token)
    child = BackendChild.start(settings.admin_url, token, tmp_path / "child.log")
    try:
        found = status(settings.admin_url, token)
        assert found["simulated"] is True and found["hosts"] == 3
        assert not answers(settings.admin_url, "tma-wrong")
    finally:
        assert child.stop() == 0
    assert not answers(settings.admin_url, token)
