"""labkit.recipes: a study run is matched to a profile by what it learned and the steps it took."""

from labkit.config import make_config
from labkit.recipes import changes_from_profile, trains_like_profile


def old_report(overrides: dict, epochs: int, model: str = "unet") -> dict:
    """A quality report as the first studies wrote it: overrides and the epochs each run trained."""
    return {"overrides": overrides, "rows": [{"model": model, "seed": 0, "epochs": epochs}]}


def test_a_study_run_is_matched_to_the_profile_by_recipe_and_steps():
    # The cpu profile: 440 steps of 16 photos, augmentation 0.5 -> 40 epochs of 180 photos.
    assert trains_like_profile(old_report({"augment_strength": 0.5, "epochs": 40}, 40), "unet", "cpu", 180)
    assert trains_like_profile(old_report({}, 40, "resnet34_unet"), "resnet34_unet", "cpu", 180)
    assert not trains_like_profile(old_report({"augment_strength": 1.0, "epochs": 40}, 40), "unet", "cpu", 180)
    assert not trains_like_profile(old_report({"epochs": 60}, 60), "unet", "cpu", 180)
    assert not trains_like_profile(old_report({"model_kwargs": {"base_width": 32}}, 40), "unet", "cpu", 180)
    assert not trains_like_profile(old_report({}, 40), "unet", "cpu", 360)  # 40 epochs of 360 photos: 880 steps
    saved = make_config("unet", "cpu", epochs=40, seed=2, run_name="bench_unet_seed2").to_dict()
    assert trains_like_profile({"overrides": {"epochs": 40}, "rows": [{"model": "unet", "config": saved}]},
                               "unet", "cpu", 180)


def test_a_study_run_names_what_it_changed_from_the_profile():
    assert changes_from_profile(old_report({"augment_strength": 0.5, "epochs": 40}, 40), "unet", "cpu", 180) == {}
    assert changes_from_profile(old_report({"augment_strength": 1.0, "epochs": 60}, 60), "unet", "cpu", 180) == {
        "augment_strength": 1.0, "train_steps": 660}
    larger = make_config("resnet34_unet", "cpu").image_size + 32
    saved = make_config("resnet34_unet", "cpu", image_size=larger).to_dict()
    assert changes_from_profile({"overrides": {}, "rows": [{"model": "resnet34_unet", "config": saved}]},
                                "resnet34_unet", "cpu", 160) == {"image_size": larger}


def test_the_folds_of_a_cross_validation_are_not_a_change_of_recipe():
    saved = make_config("unet", "cpu", folds=5, valid_fold=3).to_dict()
    assert changes_from_profile({"overrides": {}, "rows": [{"model": "unet", "config": saved}]}, "unet", "cpu", 160) == {}
