"""`python -m labkit bench library`: labkit's ResNet34-UNet beside segmentation_models_pytorch's.

The same architecture, built by both: labkit's `ResNet34UNet` and smp's `Unet("resnet34")` with the
same decoder widths and no pretrained weights. The two differ in the last layer (smp's a 3x3
convolution, labkit's 1x1: 128 parameters) and in the decoder's upsampling: nearest-neighbour by
default in smp, bilinear in labkit. So smp is timed twice, as it comes and with
`decoder_interpolation="bilinear"`: labkit's share of the second says how much of the difference
is anything but the upsampling. All three are timed in one process, round after round in turn, so
that whatever else the machine does falls on all alike: a training step (labkit's loss, AdamW) and
an inference pass, images per second, the median over rounds. smp is not a dependency of labkit
but an extra: `pip install -e ".[library]"` first.
"""

import importlib.metadata
import statistics
import time

import torch

from labkit.bench.reports import machine, marked_for_malloc, safe_file_name, save_report
from labkit.config import make_config, resolve_profile
from labkit.device import memory_format_for, resolve_device
from labkit.losses import SegmentationLoss
from labkit.models import ResNet34UNet, count_parameters, default_arguments

LIBRARY_HINT = 'pip install -e ".[library]"'  # segmentation-models-pytorch, an extra of pyproject.toml
OURS, THEIRS, THEIRS_BILINEAR = "labkit ResNet34UNet", "smp Unet(resnet34)", "smp Unet(resnet34), bilinear"
KINDS = ("train", "inference")  # what `timed_step` measures, in its order


def library_unet(widths: tuple[int, ...], upsampling: str = "nearest") -> torch.nn.Module:
    """segmentation_models_pytorch's Unet with a ResNet34 encoder, untrained, with these decoder widths
    and this upsampling mode in its decoder ("nearest", smp's default, or "bilinear", labkit's)."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise ValueError(f"segmentation_models_pytorch is not installed; `{LIBRARY_HINT}` to compare with it") from None
    return smp.Unet("resnet34", encoder_weights=None, decoder_channels=tuple(widths), classes=1,
                    decoder_interpolation=upsampling)


def timed_step(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, steps: int) -> tuple[float, float]:
    """Training and inference images per second of `model` on one batch, after one warm-up of each."""
    optimizer, loss_fn = torch.optim.AdamW(model.parameters(), lr=1e-4), SegmentationLoss()

    def train_step() -> None:
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def rate(step) -> float:
        step()  # warm-up: allocations, kernels chosen
        started = time.perf_counter()
        for _ in range(steps):
            step()
        return len(images) * steps / (time.perf_counter() - started)

    model.train()
    training = rate(train_step)
    model.eval()
    with torch.inference_mode():
        inference = rate(lambda: model(images))
    return training, inference


def compare(*, profile: str, image_size: int, batch_size: int, steps: int, rounds: int, device: str) -> dict:
    """The three models timed `rounds` times in turn; the medians and labkit's speed as a share of each smp."""
    device = resolve_device(device)
    arguments = {**default_arguments("resnet34_unet"), **make_config("resnet34_unet", profile).model_kwargs}
    widths = tuple(arguments["decoder_widths"])  # the profile's, else the model's own
    builders = {OURS: lambda: ResNet34UNet(decoder_widths=widths),
                THEIRS: lambda: library_unet(widths),
                THEIRS_BILINEAR: lambda: library_unet(widths, upsampling="bilinear")}
    memory_format = memory_format_for(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device, memory_format=memory_format)
    masks = (torch.rand(batch_size, image_size, image_size, generator=generator) > 0.5).to(device=device, dtype=torch.uint8)
    rows = {name: [] for name in builders}
    parameters = {}
    for _ in range(rounds):
        for name, build in builders.items():
            torch.manual_seed(0)
            model = build().to(device, memory_format=memory_format)
            parameters[name] = count_parameters(model)
            rows[name].append(dict(zip(KINDS, timed_step(model, images, masks, steps))))
    medians = {name: {kind: statistics.median(row[kind] for row in runs) for kind in KINDS}
               for name, runs in rows.items()}
    shares = {name: {kind: medians[OURS][kind] / medians[name][kind] for kind in KINDS}
              for name in (THEIRS, THEIRS_BILINEAR)}
    return {"machine": machine(device), "smp": importlib.metadata.version("segmentation-models-pytorch"),
            "profile": profile, "decoder_widths": widths, "image_size": image_size,
            "batch_size": batch_size, "steps": steps, "rounds": rounds, "parameters": parameters, "rounds_measured": rows,
            "median_images_per_second": medians, "labkit_share_of": shares}


def run_library(*, profile: str, image_size: int, batch_size: int, steps: int, rounds: int, device: str) -> None:
    """Measure, print one line per model and the ratio, and save the report."""
    profile = resolve_profile(profile)
    report = compare(profile=profile, image_size=image_size, batch_size=batch_size, steps=steps, rounds=rounds,
                     device=device)
    for name, median in report["median_images_per_second"].items():
        print(f"{name:30} {report['parameters'][name]:>11,} parameters: train {median['train']:7.1f} img/s, "
              f"inference {median['inference']:7.1f} img/s (median of {rounds} rounds)")
    for against, share in report["labkit_share_of"].items():
        print(f"labkit / {against}: training {share['train']:.2f}x, inference {share['inference']:.2f}x "
              f"({image_size} px, batch {batch_size}, {report['machine']['device']})")
    name = safe_file_name(marked_for_malloc(f"library_{profile}_{image_size}px_batch{batch_size}"))
    save_report(name, report, resolve_device(device))
