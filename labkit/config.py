"""Every training hyperparameter in one dataclass, and the three presets (profiles) that fill it.

The CLI and the notebooks both build a `TrainConfig` with `make_config`, and every checkpoint
stores it, so a result can always be traced back to exactly how it was trained.
"""

import dataclasses
from dataclasses import dataclass, field

import torch

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
    # (UNet, 3 seeds): 20 epochs 0.798, 40 epochs 0.825, 40 epochs with half-strength augmentation
    # 0.831, 60 epochs 0.842 but a third slower; a short schedule learns more from milder
    # augmentation. 120 epochs reached 0.845 in 2.5 times the time (ResNet34-UNet: 0.821 against
    # 0.809); a UNet twice as wide (32), 0.830 in 3 times. The runs are in reports/bench/quality_cpu_*.
    "cpu": {
        "image_size": 128,
        "epochs": 40,
        "batch_size": 16,
        "lr": 3e-3,
        "augment_strength": 0.5,
        "model_kwargs": {"unet": {"base_width": 16}, "resnet34_unet": {"decoder_widths": (128, 64, 32, 16, 16)}},
    },
    # The full recipe for one GPU.
    "gpu": {
        "image_size": 256,
        "epochs": 150,
        "batch_size": 32,
        "lr": 2e-3,
        "model_kwargs": {"unet": {"base_width": 64}, "resnet34_unet": {}},
    },
}


@dataclass
class TrainConfig:
    """How one model is trained. Field names follow the d2l / torchvision vocabulary."""

    model: str = "unet"
    model_kwargs: dict = field(default_factory=dict)
    profile: str = "custom"
    data_root: str | None = None  # None: $LABKIT_DATA, data/oxford-iiit-pet, else the synthetic set
    image_size: int = 256
    border: str = "pet"  # how trimap border pixels count: "pet", "background" or "ignore"
    train_limit: int | None = None  # train on the first N training photos only (smoke runs)
    epochs: int = 40
    batch_size: int = 16
    lr: float = 1e-3  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1  # share of all steps spent warming the learning rate up
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    augment_strength: float = 1.0  # 0 turns augmentation off
    pretrained: str | None = None  # None: from scratch; "imagenet" or a path: ResNet34 encoder weights
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16/fp16 autocast on CUDA, fp32 elsewhere
    compile: bool = False
    seed: int = 0
    output_dir: str | None = None  # None: checkpoints/
    run_name: str | None = None  # None: the model name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


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
        overrides: TrainConfig fields; `model_kwargs` entries are merged into the profile's.
    """
    profile = resolve_profile(profile)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {unknown}; known fields: {sorted(known)}")
    preset = dict(PROFILES[profile])
    model_kwargs = dict(preset.pop("model_kwargs").get(model, {}))
    model_kwargs.update(overrides.pop("model_kwargs", None) or {})
    preset.update(overrides)
    return TrainConfig(model=model, model_kwargs=model_kwargs, profile=profile, **preset)
