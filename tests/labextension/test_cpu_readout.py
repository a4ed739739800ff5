"""The status bar's CPU readout reads right (issue #19: red at 2% CPU): with the
share's cores as jupyter-resource-usage's limit, its warning (which compares percent
with cores) is off, and CPU is tracked; a site's own setting wins."""

from __future__ import annotations

import pytest


@pytest.fixture
def jp_server_config(monkeypatch):
    monkeypatch.setenv("CPU_LIMIT", "1.0")  # what the spawner sets for a 1-core share
    return {"ServerApp": {"jpserver_extensions": {"jupyter_resource_usage": True, "gpuhub.lab": True}},
            "GPUHubLab": {"allocator_url": "http://127.0.0.1:9/", "vfolders_url": "http://127.0.0.1:9/", "nvml": False}}


def test_the_cpu_limit_is_the_shares_cores_and_never_warns_in_mixed_units(jp_serverapp):
    """What jupyter-resource-usage's API handler reads (its display config):
    the limit in cores for the bar, and no warning (it would compare percent
    with cores: (1.0 - 2%) < 0.1 × 1.0 is red at 2% CPU)."""
    display = jp_serverapp.web_app.settings["jupyter_resource_usage_display_config"]
    assert display.track_cpu_percent is True
    assert display.cpu_limit == 1.0
    assert display.cpu_warning_threshold == 0


def test_a_sites_own_setting_wins():
    from types import SimpleNamespace

    from traitlets.config import Config

    from gpuhub.lab import track_session_cpu

    config = Config({"ResourceUseDisplay": {"cpu_warning_threshold": 0.2}})
    app = SimpleNamespace(config=config, web_app=SimpleNamespace(settings={}))
    track_session_cpu(app)
    assert config.ResourceUseDisplay.cpu_warning_threshold == 0.2
    assert config.ResourceUseDisplay.track_cpu_percent is True
