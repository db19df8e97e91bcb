"""Whether a run's decoded photos fit in memory, checked before anything is claimed or decoded.

Training holds its train and valid splits decoded in memory, and on the GPU when there is one
(`labkit.data.cache.decoded_bytes`: 4 bytes a pixel). `--image-size 100000` asks for terabytes;
without this check the allocation fails with a traceback after the run folder was claimed.
"""

import os

import torch

from labkit import data
from labkit.config import PROFILES, TrainConfig, make_config
from labkit.data.cache import decoded_bytes, format_size
from labkit.data.roots import chosen_root
from labkit.device import resolve_device
from labkit.models import MODELS


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say (Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def device_memory(device: torch.device) -> int | None:
    """A GPU's memory in bytes; None for the CPU, whose memory is `physical_memory`."""
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory


def training_photos(config: TrainConfig) -> int:
    """How many photos the train and valid splits hold; 1 while the synthetic stand-in is still
    to be made (counting it would mean making it), which still refuses a size no photo fits."""
    root = chosen_root(config.data_root)
    if root is None and (data.synthetic_root() / "annotations" / "trainval.txt").is_file():
        root = data.synthetic_root()
    return sum(len(data.read_split(root, split)) for split in ("train", "valid")) if root else 1


def check_decoded_splits_fit(config: TrainConfig) -> None:
    """Refuse an image size whose decoded train and valid splits take more than this machine's
    memory, or the GPU's, before the run folder is claimed or anything is allocated.

    Raises:
        ValueError: one line with the bytes needed, the memory there is, and the fix.
    """
    photos = training_photos(config)
    needed = decoded_bytes(photos, config.image_size)
    device = resolve_device(config.device)
    sizes = sorted({make_config(model, profile).image_size for profile in PROFILES for model in MODELS})
    memories = {"this machine's memory": physical_memory(), f"the memory of {device}": device_memory(device)}
    for where, memory in memories.items():
        if memory is not None and needed > memory:
            raise ValueError(
                f"image_size (--image-size) {config.image_size} needs {format_size(needed)} to hold the {photos} "
                f"train and valid photos decoded, more than {where} ({format_size(memory)}); choose a smaller "
                f"--image-size (the profiles use {', '.join(map(str, sizes))})")
