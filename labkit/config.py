"""Every training hyperparameter in one dataclass, and the three presets (profiles) that fill it.

The CLI and the notebooks both build a `TrainConfig` with `make_config`, and every checkpoint
stores it, so a result can always be traced back to exactly how it was trained.
"""

import dataclasses
from dataclasses import dataclass, field

import torch

from labkit.data.splits import FOLDS
from labkit.device import PRECISIONS

PROFILES: dict[str, dict] = {
    # Seconds on a CPU: proves the pipeline runs (tests, CI, notebooks in smoke mode).
    "smoke": {
        "image_size": 64,
        "epochs": 2,
        "batch_size": 8,
        "lr": 3e-3,
        "train_limit": 48,
        "model_kwargs": {"unet": {"base_width": 8}, "resnet34_unet": {"decoder_widths": (64, 32, 16, 16, 8)}},
    },
    # Minutes on a laptop CPU: a model worth looking at. Chosen on the real sample's valid split
    # (UNet, 3 seeds; 180 training photos, 11 steps an epoch): 20 epochs 0.798, 40 epochs 0.825,
    # 40 epochs with half-strength augmentation 0.831, 60 epochs 0.842 but half as long again; a short
    # schedule learns more from milder augmentation. 120 epochs reached 0.845 in 2.5 times the time
    # (ResNet34-UNet: 0.821 against 0.809); a UNet twice as wide (32), 0.830 in 3 times. The runs
    # are in reports/bench/quality_cpu_*. The budget is those 40 epochs counted in steps (440), so
    # the full dataset (207 steps an epoch) costs a student the same wait, not 18 times as long.
    # Cross-validated (5 folds of the sample's trainval, reports/bench/quality_cpu_*_folds-5*), both
    # models train at 96 px. The UNet takes 780 steps there in the time 440 take at 128 px, and was
    # better on every fold (0.839 +- 0.010 against 0.827 +- 0.009, +0.012 +- 0.004 paired by fold;
    # 227 s against 226 s a run). The ResNet34-UNet keeps 440 steps, which take 333 s at 96 px against
    # 486 s at 128: 0.796 +- 0.024 against 0.802 +- 0.032 (-0.006 +- 0.003 paired, not clear by the
    # two-standard-error rule, lower on 4 folds of 5), the price of `make lab` in 15 minutes. At 96 px
    # with 640 steps it was within the spread of 128 px (+0.002 +- 0.004) in as long (508 s). The
    # ResNet34-UNet warms its learning rate up over 30 % of the steps (OneCycleLR's own default), not
    # the 10 % it had: higher on every fold (0.803 +- 0.025, +0.007 +- 0.002 paired), the same arithmetic,
    # against the 10 % warm-up's run of 2026-12-03. Against its run of 2026-12-07, +0.004 +- 0.003: within
    # the spread (the runs of 12-03 differ from those since; README, "One recipe, two days"). It stays as
    # PyTorch's default, not worse.
    "cpu": {
        "image_size": 96,
        "epochs": None,
        "train_steps": 440,
        "batch_size": 16,
        "lr": 3e-3,
        "augment_strength": 0.5,
        "model_kwargs": {"unet": {"base_width": 16}, "resnet34_unet": {"decoder_widths": (128, 64, 32, 16, 16)}},
        # fields one model trains with instead of the above
        "by_model": {"unet": {"train_steps": 780}, "resnet34_unet": {"warmup_fraction": 0.3}},
    },
    # The full recipe for one GPU: TrainConfig's own defaults and the models' full widths.
    "gpu": {},
}


@dataclass
class TrainConfig:
    """How one model is trained. Field names follow the d2l / torchvision vocabulary; the defaults
    are the `gpu` profile, and every field is checked when the config is made."""

    model: str = "unet"
    model_kwargs: dict = field(default_factory=dict)  # {}: the model's own (full) widths
    profile: str = "gpu"
    data_root: str | None = None  # None: $LABKIT_DATA, data/oxford-iiit-pet, else the synthetic set
    image_size: int = 256
    border: str = "pet"  # how trimap border pixels count: "pet", "background" or "ignore"
    train_limit: int | None = None  # train on the first N training photos only (smoke runs)
    # Which photos validate: fold `valid_fold` of trainval cut into `folds` (labkit.data.splits). The
    # default, fold 0 of 10, is the valid split; `bench quality --folds K` holds out each in turn.
    valid_fold: int = 0
    folds: int = FOLDS
    # The budget: whole epochs, or a number of optimiser steps (epochs of the split's size, the last
    # one cut short), or both: the epochs, but no more than the steps, so that a small dataset gets
    # its epochs and a bigger one does not multiply the wait.
    epochs: int | None = 150
    train_steps: int | None = None
    batch_size: int = 32
    lr: float = 2e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1  # share of all steps spent warming the learning rate up
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    augment_strength: float = 1.0  # 0 turns augmentation off
    pretrained: str | None = None  # None: from scratch; "imagenet" or a path: ResNet34 encoder weights
    zero_init_residual: bool = False  # residual blocks start as the identity (from scratch only)
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16 on GPUs with native bf16, fp16 on older GPUs, fp32 elsewhere
    compile: bool = False
    seed: int = 0
    output_dir: str | None = None  # None: checkpoints/
    run_name: str | None = None  # None: <model>-<profile>

    def __post_init__(self) -> None:
        check_config(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def default_value(name: str):
    """TrainConfig's default for one field: the single place a default is written."""
    return TrainConfig.__dataclass_fields__[name].default


def resolve_profile(profile: str) -> str:
    """`auto` means `gpu` when CUDA is available, else `cpu`."""
    if profile == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {['auto', *PROFILES]}")
    return profile


def make_config(model: str = "unet", profile: str = "auto", **overrides) -> TrainConfig:
    """A TrainConfig from a profile, with any field overridden by keyword.

    Args:
        model: "unet" or "resnet34_unet".
        profile: "smoke", "cpu", "gpu" or "auto".
        overrides: TrainConfig fields; `model_kwargs` entries are merged into the profile's, and
            `epochs` or `train_steps` replaces the profile's budget (`make_config("unet", "cpu",
            epochs=3)` trains 3 epochs, not the profile's steps). A profile's `by_model` fields
            replace its own for that model.
    """
    profile = resolve_profile(profile)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}; known fields: {sorted(known)}")
    preset = dict(PROFILES[profile])
    preset.update(preset.pop("by_model", {}).get(model, {}))
    for name in BUDGETS:  # a budget of None leaves the profile's
        if name in overrides and overrides[name] is None:
            del overrides[name]
    if any(name in overrides for name in BUDGETS):  # a budget given replaces the profile's, whichever kind it is
        preset.update({name: None for name in BUDGETS})
    model_kwargs = dict(preset.pop("model_kwargs", {}).get(model, {}))
    model_kwargs.update(overrides.pop("model_kwargs", None) or {})
    preset.update(overrides)
    return TrainConfig(model=model, model_kwargs=model_kwargs, profile=profile, **preset)


BUDGETS = ("epochs", "train_steps")  # the two ways to say how long a model trains


def whole(low: int):
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= low


def number(low: float, high: float = float("inf"), above: bool = False):
    def check(value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (value > low if above else value >= low) and value < high
    return check


# Every numeric setting: the test it must pass, and the allowed values in words for the error.
NUMERIC_RULES = {
    "image_size": (whole(16), "a whole number >= 16 (pixels)"),
    "train_limit": (lambda value: value is None or whole(1)(value), "None or a whole number >= 1"),
    "epochs": (lambda value: value is None or whole(1)(value), "None or a whole number >= 1"),
    "train_steps": (lambda value: value is None or whole(1)(value), "None or a whole number >= 1"),
    "batch_size": (whole(1), "a whole number >= 1"),
    "lr": (number(0, above=True), "a number > 0"),
    "weight_decay": (number(0), "a number >= 0"),
    "warmup_fraction": (number(0, 1), "a number >= 0 and < 1"),
    "bce_weight": (number(0), "a number >= 0"),
    "dice_weight": (number(0), "a number >= 0"),
    "augment_strength": (number(0), "a number >= 0 (0 turns augmentation off)"),
    "seed": (whole(0), "a whole number >= 0"),
    "folds": (whole(2), "a whole number >= 2"),
    "valid_fold": (whole(0), "a whole number >= 0, below folds"),
}


def option_name(field_name: str) -> str:
    """How a field is spelled on the command line: batch_size -> --batch-size."""
    return "--" + field_name.replace("_", "-")


def check_setting(name: str, value) -> None:
    """Refuse a value that breaks `name`'s rule in NUMERIC_RULES, naming the setting and its option.

    Raises:
        ValueError: e.g. "batch_size (--batch-size) must be a whole number >= 1, got 0".
    """
    allowed, words = NUMERIC_RULES[name]
    if not allowed(value):
        raise ValueError(f"{name} ({option_name(name)}) must be {words}, got {value!r}")


def check_config(config: TrainConfig) -> None:
    """Refuse a setting that cannot train, naming it, its allowed values and what was given,
    before any photo is decoded.

    Raises:
        ValueError: one line naming the first bad setting.
    """
    from labkit.data import BORDER_MODES
    from labkit.models import MODELS

    for name in NUMERIC_RULES:
        check_setting(name, getattr(config, name))
    if config.valid_fold >= config.folds:
        raise ValueError(f"valid_fold (--set valid_fold=...) must be below folds={config.folds}, got {config.valid_fold}")
    if config.epochs is None and config.train_steps is None:
        raise ValueError("give a training budget: epochs (--epochs), train_steps (--train-steps), or both "
                         "(epochs, but at most train_steps steps)")
    if config.bce_weight == 0 and config.dice_weight == 0:
        raise ValueError("bce_weight and dice_weight are both 0, which leaves no loss to train on; set one above 0")
    choices = {"model": tuple(MODELS), "border": BORDER_MODES, "precision": PRECISIONS}
    for name, allowed_values in choices.items():
        if getattr(config, name) not in allowed_values:
            raise ValueError(f"{name} ({option_name(name)}) must be one of {', '.join(allowed_values)}; "
                             f"got {getattr(config, name)!r}")
