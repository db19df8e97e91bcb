import dataclasses

import pytest

from labkit.config import PROFILES, TrainConfig, default_value, make_config, resolve_profile
from labkit.models import MODELS


@pytest.mark.parametrize("model", MODELS)
def test_profile_fills_every_field_it_names(model):
    config = make_config(model, "cpu")
    for_this_model = PROFILES["cpu"]["by_model"].get(model, {})
    for key, value in PROFILES["cpu"].items():
        if key not in ("model_kwargs", "by_model"):
            assert getattr(config, key) == for_this_model.get(key, value)
    assert config.model_kwargs == PROFILES["cpu"]["model_kwargs"][model]


def test_a_profiles_fields_for_one_model_replace_its_own_for_that_model_only():
    by_model = PROFILES["cpu"]["by_model"]
    for model, fields in by_model.items():
        for key, value in fields.items():
            assert getattr(make_config(model, "cpu"), key) == value
            for other in (name for name in MODELS if name != model):
                its_own = by_model.get(other, {}).get(key, PROFILES["cpu"].get(key, default_value(key)))
                assert getattr(make_config(other, "cpu"), key) == its_own


def test_overrides_win_over_the_profile():
    assert make_config("unet", "cpu", epochs=3).epochs == 3


def test_the_cpu_profile_budgets_steps_so_a_bigger_dataset_does_not_lengthen_it():
    config = make_config("unet", "cpu")
    assert config.train_steps is not None and config.epochs is None


def test_epochs_given_replace_the_profiles_step_budget():
    config = make_config("unet", "cpu", epochs=3)
    assert (config.epochs, config.train_steps) == (3, None)


def test_steps_given_replace_the_profiles_epochs():
    config = make_config("unet", "smoke", train_steps=5)
    assert (config.epochs, config.train_steps) == (None, 5)


def test_a_budget_of_none_keeps_the_profiles():
    assert make_config("unet", "cpu", epochs=None, train_steps=None).train_steps == make_config("unet", "cpu").train_steps


def test_no_budget_at_all_is_refused_naming_both_flags():
    with pytest.raises(ValueError, match="--epochs.*--train-steps"):
        TrainConfig(epochs=None, train_steps=None)


def test_both_budgets_at_once_are_epochs_with_a_ceiling_of_steps():
    config = make_config("unet", "smoke", epochs=2, train_steps=5)
    assert (config.epochs, config.train_steps) == (2, 5)


def test_model_kwargs_overrides_merge_into_the_profiles():
    config = make_config("unet", "smoke", model_kwargs={"bilinear": False})
    assert config.model_kwargs == {**PROFILES["smoke"]["model_kwargs"]["unet"], "bilinear": False}


def test_unknown_field_is_rejected_with_the_known_ones_listed():
    with pytest.raises(ValueError, match="epochz.*known fields"):
        make_config("unet", "smoke", epochz=3)


def test_unknown_profile_is_rejected():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        make_config("unet", "fast")


def test_auto_profile_means_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_profile("auto") == "cpu"


def test_config_survives_a_round_trip_through_a_dict():
    config = make_config("resnet34_unet", "smoke", lr=0.01)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_a_profiles_fields_for_one_model_are_trainconfig_fields_other_than_model_kwargs():
    """`by_model` replaces fields whole; the model's arguments are per model already, in `model_kwargs`."""
    known = {field.name for field in dataclasses.fields(TrainConfig)} - {"model", "model_kwargs", "profile"}
    for preset in PROFILES.values():
        for fields in preset.get("by_model", {}).values():
            assert set(fields) <= known
