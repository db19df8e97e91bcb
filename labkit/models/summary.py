"""Looking inside a model: the tensor shapes between its blocks and the arithmetic it costs."""

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def layer_shapes(model: nn.Module, image_size: tuple[int, int] = (256, 256), depth: int = 1) -> list[dict]:
    """One row per submodule `depth` levels down, in call order: its name, class, output shape
    (for a single image) and parameter count. Runs one forward pass in eval mode."""
    rows, hooks = [], []

    def record(name: str, module: nn.Module):
        def hook(_module, _inputs, output):
            first = output[0] if isinstance(output, (tuple, list)) else output
            rows.append({"name": name, "block": type(module).__name__, "output_shape": tuple(first.shape),
                         "parameters": sum(p.numel() for p in module.parameters())})
        return hook

    for name, module in model.named_modules():
        if name and name.count(".") == depth - 1:
            hooks.append(module.register_forward_hook(record(name, module)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, *image_size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return rows


def flops_per_image(model: nn.Module, image_size: int = 256, training: bool = False) -> int:
    """Floating-point operations for one image (a multiply-add counts as two), counted by
    torch.utils.flop_counter; `training` adds the backward pass (about twice the forward)."""
    images = torch.zeros(1, 3, image_size, image_size)
    was_training = model.training
    model.train(training)
    try:
        with FlopCounterMode(display=False) as counter:
            if training:
                model(images).sum().backward()
                model.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    model(images)
    finally:
        model.train(was_training)
    return counter.get_total_flops()
