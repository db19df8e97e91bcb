"""labkit.recipes: a study run is matched to a profile by what it learned and the steps it took."""

from labkit.config import make_config
from labkit.recipes import changes_from, changes_from_profile


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
