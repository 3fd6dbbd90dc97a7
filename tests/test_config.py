"""TrainConfig: every value type-checked (TOML and CLI alike), Δr and learning rates that
cannot train refused, Δr that float32 cannot resolve warned about, presets valid."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from om2p_lite.flows.meanflow import PrecisionWarning, unresolved_share, warn_unresolved_dr
from om2p_lite.rl.config import TrainConfig, field_types
from om2p_lite.runtime.budget import PRESETS, train_preset


def _toml(text: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


@pytest.mark.parametrize("toml, field, expected, shown", [
    ('steps = "five"', "steps", "an integer", "'five' (str)"),
    ("steps = 1000.0", "steps", "an integer", "1000.0 (float)"),
    ("steps = true", "steps", "an integer", "True (bool)"),
    ('lr = "3e-4"', "lr", "a number", "'3e-4' (str)"),
    ("lr = false", "lr", "a number", "False (bool)"),
    ("task = 3", "task", "a string", "3 (int)"),
    ("progress = 1", "progress", "true or false", "1 (int)"),
    ('progress = "no"', "progress", "true or false", "'no' (str)"),
    ("seed = [1, 2]", "seed", "an integer", "[1, 2] (list)"),
])
def test_toml_value_of_the_wrong_type_names_field_type_and_value(toml, field, expected, shown):
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict(_toml(toml))
    msg = str(err.value)
    assert msg.startswith(f"config field '{field}': expected {expected}, got {shown}")
    assert "Fix:" in msg and f"{field} = " in msg.split("Fix:")[1]


def test_every_field_has_a_checked_type_and_right_values_pass():
    types = field_types()
    assert set(types.values()) <= {int, float, str, bool}
    defaults = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig.from_dict(defaults) == TrainConfig()
    for name, kind in types.items():  # a value of another type is refused for every field
        wrong = "text" if kind is not str else 1.5
        with pytest.raises(ValueError, match=f"config field '{name}': expected"):
            TrainConfig.from_dict({name: wrong})


def test_ints_are_accepted_for_float_fields_and_stored_as_floats():
    cfg = TrainConfig.from_dict({"lr": 1, "eta": 0, "steps": 7})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and isinstance(cfg.eta, float)
    assert cfg.steps == 7 and isinstance(cfg.steps, int)


def test_validate_type_checks_configs_built_in_python_too():
    with pytest.raises(ValueError, match="'batch_size': expected an integer, got '8'"):
        dataclasses.replace(TrainConfig(), batch_size="8").validate()


def test_not_a_table_is_refused():
    with pytest.raises(ValueError, match="table of field = value"):
        TrainConfig.from_dict([("steps", 5)])  # type: ignore[arg-type]


@pytest.mark.parametrize("dr", [1e-50, 1e-46, 5e-324])
def test_dr_that_is_zero_in_float32_is_refused(dr: float):
    assert dr > 0 and torch.tensor(dr, dtype=torch.float32) == 0
    with pytest.raises(ValueError, match=r"'dr'.*0 in torch.float32.*0/0.*Fix"):
        TrainConfig(dr=dr).validate()


@pytest.mark.parametrize("lr", [math.inf, -math.inf, math.nan, 0.0, -1e-3])
def test_learning_rate_not_finite_or_not_positive_is_refused(lr: float):
    with pytest.raises(ValueError, match=r"config field 'lr'.*finite number > 0.*Fix"):
        TrainConfig(lr=lr).validate()


def test_non_finite_floats_are_refused_by_name():
    for name in ("alpha", "cql_alpha", "adaptive_p", "policy_noise", "omar_sigma"):
        with pytest.raises(ValueError, match=f"config field '{name}'"):
            dataclasses.replace(TrainConfig(), **{name: math.nan}).validate()


def _float32_unresolved(dr: float) -> float:
    """Share of r ~ U[0, 1] (sampled) where Δr is below float32's spacing at r."""
    r = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    spacing = torch.nextafter(r, torch.ones_like(r)) - r
    return float((dr < spacing.double()).double().mean())


@pytest.mark.parametrize("dr", [5e-8, 3e-8, 1e-8, 1e-10, 1e-12, 1e-40])
def test_dr_below_float32_resolution_warns_but_is_kept(dr: float):
    assert _float32_unresolved(dr) >= 0.5  # the property the warning is about
    with pytest.warns(PrecisionWarning, match=r"'dr'.*below torch.float32's spacing"):
        cfg = TrainConfig(dr=dr).validate()
    assert cfg.dr == dr


@pytest.mark.parametrize("dr", [1e-3, 1e-5, 1e-7, 6e-8])
def test_resolvable_dr_does_not_warn(dr: float):
    assert _float32_unresolved(dr) < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(dr=dr).validate()


def test_tiny_dr_warns_only_for_the_fd_estimator():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(dr=1e-12, estimator="zero").validate()
        assert not warn_unresolved_dr(1e-12, torch.float64)  # float64 resolves it


def test_unresolved_share_counts_r_plus_dr_equal_r():
    below, equal = unresolved_share(1e-8)
    # r in [0.25, 1) has spacing >= 2^-25 ≈ 3e-8, so 1e-8 < spacing/2 and r + Δr rounds to r
    assert equal == pytest.approx(0.75, abs=0.01) and below >= equal
    assert unresolved_share(1e-3) == (0.0, 0.0)


def test_eval_episodes_zero_means_no_evaluation_and_is_valid():
    assert TrainConfig(eval_episodes=0).validate().eval_episodes == 0
    with pytest.raises(ValueError, match="eval_episodes"):
        TrainConfig(eval_episodes=-1).validate()


def test_imported_quality_needs_a_dataset_file():
    with pytest.raises(ValueError, match=r"'quality'.*imported.*Fix: set dataset"):
        TrainConfig(quality="imported").validate()
    cfg = TrainConfig(quality="imported", dataset="some.npz").validate()
    assert cfg.quality == "imported"
    with pytest.raises(ValueError, match="unknown quality"):
        TrainConfig(quality="great", dataset="some.npz").validate()


@pytest.mark.parametrize("task, ok", [("spread", True), ("spread4", True), ("spread2", True),
                                      ("spread3", False), ("spread7", False), ("spread0", False),
                                      ("spreads", False), ("pong", False)])
def test_task_names_include_spread_with_n_agents(task: str, ok: bool):
    if ok:
        assert TrainConfig(task=task).validate().task == task
    else:
        with pytest.raises(ValueError, match=r"config field 'task'.*Fix"):
            TrainConfig(task=task).validate()


def test_cql_and_omar_need_a_positive_proposal_std():
    for algo in ("cql", "omar"):
        with pytest.raises(ValueError, match="policy_noise"):
            TrainConfig(algo=algo, policy_noise=0.0).validate()
    assert TrainConfig(algo="td3bc", policy_noise=0.0).validate()


def test_omar_elites_zero_means_all_candidates():
    assert TrainConfig(algo="omar").validate().omar_elites == 0
    with pytest.raises(ValueError, match="omar_elites"):
        TrainConfig(algo="omar", omar_samples=4, omar_elites=5).validate()


def test_presets_are_valid_configs():
    for name in PRESETS:
        assert TrainConfig.from_dict(train_preset(name)).validate(), name
