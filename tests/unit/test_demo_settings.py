"""`serve --local` turns the autoscaler on with minute-scale timings (backend/localfleet/demo_settings.py),
but what the operator set explicitly (config file, environment) stands."""

from __future__ import annotations

from backend.localfleet.demo_settings import DEMO_AUTOSCALER, DEMO_PRICING, local_demo_settings
from backend.settings import Settings


def test_unset_fields_get_the_demo_values(tmp_path):
    s = local_demo_settings(Settings(data_dir=tmp_path))
    assert s.autoscaler.enabled and s.autoscaler.providers == ["local"]
    for name, value in DEMO_AUTOSCALER.items():
        assert getattr(s.autoscaler, name) == value
    for name, value in DEMO_PRICING.items():
        assert getattr(s.pricing, name) == value
    assert s.pricing.target_utilization == Settings(data_dir=tmp_path).pricing.target_utilization  # untouched


def test_what_the_operator_set_stands(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENMILL_AUTOSCALER__ENABLED", "false")
    monkeypatch.setenv("TOKENMILL_PRICING__INTERVAL_S", "30")
    s = local_demo_settings(Settings(data_dir=tmp_path, autoscaler={"max_replicas": 5}))
    assert not s.autoscaler.enabled and s.autoscaler.max_replicas == 5
    assert s.autoscaler.interval_s == 10.0 and s.autoscaler.min_replicas == 1
    assert s.pricing.interval_s == 30.0 and s.pricing.window_s == 60.0


def test_the_demos_bounds_give_way_to_the_operators(tmp_path):
    s = local_demo_settings(Settings(data_dir=tmp_path, autoscaler={"min_replicas": 4}))
    assert s.autoscaler.min_replicas == 4 and s.autoscaler.max_replicas >= 4  # not the demo's 3: invalid
    assert s.autoscaler.enabled and s.autoscaler.interval_s == 10.0
