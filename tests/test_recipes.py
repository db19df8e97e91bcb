"""labkit.recipes: a study run is matched to a profile by what it learned and the steps it took."""

from labkit.config import make_config
from labkit.recipes import changes_from, changes_from_profile, closest_reference


def report(model: str = "unet", **settings) -> dict:
    """A quality report of one run of `model`, trained as the cpu profile with `settings`."""
    config = make_config(model, "cpu", seed=2, run_name=f"bench_{model}_seed2", **settings)
    return {"overrides": settings, "rows": [{"model": model, "seed": 2, "config": config.to_dict()}]}


def epochs_of(model: str, train_count: int) -> int:
    """The profile's step budget as whole epochs of `train_count` photos (it must divide evenly)."""
    config = make_config(model, "cpu")
    steps_per_epoch = train_count // config.batch_size
    assert config.train_steps % steps_per_epoch == 0
    return config.train_steps // steps_per_epoch


def test_a_study_run_is_matched_to_the_profile_by_recipe_and_steps():
    assert changes_from_profile(report(), "unet", "cpu", 160) == {}
    assert changes_from_profile(report("resnet34_unet"), "resnet34_unet", "cpu", 160) == {}
    assert changes_from_profile(report(augment_strength=1.5), "unet", "cpu", 160)
    assert changes_from_profile(report(model_kwargs={"base_width": 32}), "unet", "cpu", 160)
    assert changes_from_profile(report("resnet34_unet", lr=1e-3), "resnet34_unet", "cpu", 160)


def test_the_same_steps_counted_in_epochs_are_the_same_budget():
    epochs = epochs_of("unet", 160)
    assert changes_from_profile(report(epochs=epochs), "unet", "cpu", 160) == {}
    assert changes_from_profile(report(epochs=epochs), "unet", "cpu", 320)  # twice the photos: twice the steps


def test_a_run_is_compared_with_any_reference_recipe_not_only_the_profile_now():
    """Notebook 03's seed study varied the profile as it was; its runs are judged against that."""
    then = make_config("unet", "cpu", image_size=160, train_steps=300)
    assert changes_from(report(image_size=160, train_steps=300), then, 160) == {}
    assert changes_from(report(image_size=160, train_steps=300, lr=1e-3), then, 160) == {"lr": 1e-3}
    assert changes_from(report(), then, 160) == {"image_size": make_config("unet", "cpu").image_size,
                                                 "train_steps": make_config("unet", "cpu").train_steps}


def test_a_study_run_names_what_it_changed_from_the_profile():
    steps = make_config("unet", "cpu").train_steps
    assert changes_from_profile(report(augment_strength=1.5, train_steps=steps * 2), "unet", "cpu", 160) == {
        "augment_strength": 1.5, "train_steps": steps * 2}
    larger = make_config("resnet34_unet", "cpu").image_size + 32
    assert changes_from_profile(report("resnet34_unet", image_size=larger), "resnet34_unet", "cpu", 160) == {
        "image_size": larger}


def test_the_folds_of_a_cross_validation_are_not_a_change_of_recipe():
    assert changes_from_profile(report(folds=5, valid_fold=3), "unet", "cpu", 160) == {}


def test_a_run_is_compared_with_the_run_that_differs_from_it_in_the_fewest_settings():
    candidates = {"profile": {}, "short warm-up": {"warmup_fraction": 0.1}, "decay": {"weight_decay": 0.05}}
    assert closest_reference({"weight_decay": 0.05, "warmup_fraction": 0.1}, candidates) == "short warm-up"
    assert closest_reference({"lr": 0.006}, candidates) == "profile"
    assert closest_reference({"warmup_fraction": 0.1}, candidates) == "profile"  # never with itself
    assert closest_reference({"weight_decay": 0.05, "lr": 0.006},  # a tie: the first candidate
                             {"decay": {"weight_decay": 0.05}, "peak": {"lr": 0.006}}) == "decay"


def test_of_the_runs_within_it_a_run_is_compared_with_the_one_that_shares_the_most_settings():
    changes = {"image_size": 128, "warmup_fraction": 0.1, "zero_init_residual": True}
    candidates = {"profile": {}, "short warm-up": {"warmup_fraction": 0.1},
                  "larger, short warm-up": {"image_size": 128, "warmup_fraction": 0.1}}
    assert closest_reference(changes, candidates) == "larger, short warm-up"


def test_a_run_whose_setting_differs_in_value_is_not_compared_with_it():
    """A 30 % warm-up is no part of a run with a 10 % warm-up."""
    candidates = {"profile": {}, "long warm-up": {"warmup_fraction": 0.3}}
    assert closest_reference({"warmup_fraction": 0.1, "lr": 0.006}, candidates) == "profile"
    assert closest_reference({"warmup_fraction": 0.1}, {"long warm-up": {"warmup_fraction": 0.3}}) is None
