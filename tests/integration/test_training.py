"""``nextbest train`` on generated data: a complete MLflow run, a registered champion served
as probabilities, and a promotion gate that refuses a worse model."""

from __future__ import annotations

import numpy as np
import pytest

from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.feature_schema import model_feature_names
from tests.conftest import World, demo_terms

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_training_logs_a_complete_run_and_registers_a_champion(world: World) -> None:
    import mlflow

    from nextbest.models.registry import configure_mlflow

    s = world.settings
    configure_mlflow(s)
    result = world.train_result
    run = mlflow.get_run(result.run_id)
    assert run.data.params["feature_service"] == "nba_v1"
    assert run.data.params["learner"] == result.learner
    metrics = run.data.metrics
    for key in (
        "net_value_dr",
        "policy_dr_model",
        "policy_dr_no_action",
        "policy_ips_random_arm",
        "policy_ips_best_single_arm",
        "policy_ips_response_ranking",
        "regret_model",
    ):
        assert key in metrics, key
    assert any(k.startswith("qini_") for k in metrics) and any(
        k.startswith("auc_") for k in metrics
    )
    assert run.data.tags["lineage.feature_service"] == "nba_v1"
    assert len(run.data.tags["lineage.data_hash"]) == 16
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert {"model_card.md", "lineage.json", "plots", "evaluation"} <= artifacts
    # the evaluation step beside training logged the regret against the truth to the run
    evaluation = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "evaluation")}
    assert "evaluation/policy_regret.json" in evaluation
    assert not any(k.startswith("regret_") for k in result.metrics)  # not training's
    # the learner was chosen by cross-fitting on the training part (training.selection)
    selection = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "selection")}
    assert selection == {"selection/cross_fitted.json"}
    assert run.data.tags["selection_reason"].startswith("selected: 5-fold cross-fitted")
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert {"plots/qini_curves.png", "plots/feature_importance.png"} <= plots
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(s.model_name, "champion")
    assert str(champion.version) == result.model_version


def test_champion_pyfunc_returns_probabilities_not_labels(world: World) -> None:
    import mlflow
    import pandas as pd

    s = world.settings
    model = mlflow.pyfunc.load_model(f"models:/{s.model_name}@champion")
    features = model.metadata.get_input_schema().input_names()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(0, 5, size=(20, len(features))), columns=features)
    out = model.predict(frame)
    p_cols = [c for c in out.columns if c.startswith("p_")]
    assert f"p_{NO_ACTION}" in p_cols and len(p_cols) >= 2
    values = out[p_cols].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert len(np.unique(values.round(6))) > 2  # probabilities, not 0/1 labels


def test_promotion_gate_refuses_a_worse_model(world: World) -> None:
    import mlflow

    from nextbest.customers.feast_store import feature_store
    from nextbest.models.decision_model import DecisionModel, ValueModel
    from nextbest.models.learners import TLearner
    from nextbest.models.registry import configure_mlflow, log_decision_model, promote
    from training.dataset import build_training_set, exposures_entity_df
    from training.train import catalog_costs, policy_value, split

    s = world.settings
    features = model_feature_names(demo_terms())
    ts = build_training_set(
        feature_store(s), exposures_entity_df(s.raw_dir, s.unified_dir), features
    )
    tr, _, te = split(ts, s.seed)
    rng = np.random.default_rng(s.seed)
    # Outcomes shuffled across rows: the model learns noise, so its policy is worse.
    y_noise = rng.permutation(ts.y[tr])
    worse = DecisionModel(
        response=TLearner(control=NO_ACTION, random_state=s.seed).fit(
            ts.X[tr], ts.treatment[tr], y_noise
        ),
        value=ValueModel(random_state=s.seed).fit(ts.X[tr], ts.treatment[tr], ts.revenue[tr]),
        feature_names=features,
        learner_name="t_learner_on_shuffled_outcomes",
    )
    test = ts.frame.iloc[te].reset_index(drop=True)
    costs, _ = catalog_costs(s)
    new_value = policy_value(worse, test, costs)[0]
    configure_mlflow(s)
    client = mlflow.MlflowClient()
    before = client.get_model_version_by_alias(s.model_name, "champion").version
    with mlflow.start_run(run_name="worse-model"):
        info = log_decision_model(worse, ts.X[te], world.home / "tmp-worse")
    version = mlflow.register_model(info.model_uri, s.model_name).version
    decision = promote(
        s, str(version), new_value, lambda champ: policy_value(champ, test, costs)[0]
    )
    assert decision.champion_value is not None and decision.champion_value > new_value
    assert decision.alias == "challenger"
    assert "does not beat" in decision.reason
    assert client.get_model_version_by_alias(s.model_name, "champion").version == before
    assert str(client.get_model_version_by_alias(s.model_name, "challenger").version) == str(
        version
    )
    tag = client.get_model_version(s.model_name, str(version)).tags["promotion_reason"]
    assert tag == decision.reason


def test_a_chunked_feature_join_gives_the_same_training_set(world: World) -> None:
    """The point-in-time join in chunks of exposures (how training bounds its memory)
    returns the same rows, features and lineage as one join over every exposure."""
    import pandas as pd

    from nextbest.customers.feast_store import feature_store
    from training.dataset import build_training_set, exposures_entity_df

    s = world.settings
    features = model_feature_names(demo_terms())
    store = feature_store(s)
    entity = exposures_entity_df(s.raw_dir, s.unified_dir).head(2_000)
    whole = build_training_set(store, entity, features, chunk_rows=None)
    chunked = build_training_set(store, entity, features, chunk_rows=333)
    assert chunked.lineage == whole.lineage
    assert len(chunked.frame) == len(entity)
    pd.testing.assert_frame_equal(
        chunked.frame[whole.frame.columns], whole.frame, check_dtype=False
    )
    np.testing.assert_array_equal(chunked.X, whole.X)
    assert np.isfinite(whole.X).mean() > 0.5  # features really joined
