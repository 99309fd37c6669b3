"""Training and the service load the policy checked against the catalog: a policy naming a
channel the catalog lacks stops both, with the same message, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nextbest.core.settings import PROJECT_ROOT, Settings
from nextbest.decisions.catalog import ConfigError


def _settings_with_a_fax_cap(tmp_path: Path) -> Settings:
    policy = yaml.safe_load((PROJECT_ROOT / "config" / "policy.yaml").read_text())
    policy["caps"].append({"channel": "fax", "max_contacts": 1, "period_days": 7})
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return Settings(home=tmp_path / "home", policy=path)


def test_training_refuses_a_policy_the_catalog_does_not_fit_before_writing(
    tmp_path: Path,
) -> None:
    from training.train import train

    settings = _settings_with_a_fax_cap(tmp_path)
    with pytest.raises(ConfigError) as err:
        train(settings)
    message = str(err.value)
    assert str(settings.policy) in message and "field 'channel'" in message
    assert "'fax' is not declared in the catalog's channels" in message, message
    # nothing was opened, built or logged: no home, no store, no MLflow run
    assert not (tmp_path / "home").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml"]

    # the service stops at start with the same words
    from nextbest.decisions.runtime import StartupError
    from serving.service import catalog_and_policy

    with pytest.raises(StartupError) as at_start:
        catalog_and_policy(settings)
    assert str(at_start.value) == message
