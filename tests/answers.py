"""Answers to the workbook's exercises, as a student would type them into an answer cell.

RIGHT: correct answers written differently from the masters (layers created in another order),
which every check must accept. WRONG: the mistakes each check exists to catch, with the check
(public or hidden) that catches it and a piece of the message it must give. TRICKS: answers that
try to get marks without writing the answer, each refused with a reason naming what it used.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    exercise: str  # the answer cell's grade_id
    label: str
    source: str
    caught_by: str = ""  # "public" or "hidden": the check that fails it
    message: str = ""  # a piece of the failure message


RIGHT = [
    Answer("Up", "conv created before up_conv", '''
class Up(nn.Module):
    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2) if bilinear else DoubleConv(in_channels, out_channels)
        self.up_conv = None if bilinear else nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)

    def forward(self, x, skip):
        if self.up_conv is None:
            x = F.interpolate(x, size=tuple(skip.shape[2:]), mode="bilinear", align_corners=False)
        else:
            x = self.up_conv(x, output_size=list(skip.shape[2:]))
        return self.conv(torch.cat((skip, x), 1))
'''),
    Answer("BasicBlock", "downsample created first", '''
class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        needs_projection = stride != 1 or in_channels != out_channels
        self.downsample = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                         nn.BatchNorm2d(out_channels)) if needs_projection else None)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)
'''),
    Answer("UNet", "up blocks created before down blocks, a loop", '''
class UNet(nn.Module):
    pad_multiple = 32

    def __init__(self, in_channels=3, out_channels=1, base_width=64, bilinear=True):
        super().__init__()
        w = base_width
        factor = 2 if bilinear else 1
        self.output_conv = nn.Conv2d(w, out_channels, kernel_size=1)
        self.up4 = Up(2 * w, w, bilinear)
        self.up3 = Up(4 * w, 2 * w // factor, bilinear)
        self.up2 = Up(8 * w, 4 * w // factor, bilinear)
        self.up1 = Up(16 * w, 8 * w // factor, bilinear)
        self.input_block = DoubleConv(in_channels, w)
        widths = [w, 2 * w, 4 * w, 8 * w, 16 * w // factor]
        for level in range(1, 5):
            setattr(self, f"down{level}", Down(widths[level - 1], widths[level]))
        init_weights(self)
        self.output_conv.reset_parameters()

    def forward(self, images):
        height, width = images.shape[-2:]
        skips = [self.input_block(pad_to_multiple(images, self.pad_multiple))]
        for level in range(1, 5):
            skips.append(getattr(self, f"down{level}")(skips[-1]))
        x = skips.pop()
        for level in range(1, 5):
            x = getattr(self, f"up{level}")(x, skips.pop())
        return self.output_conv(x)[..., :height, :width]
'''),
]


def wrong(exercise: str, label: str, caught_by: str, message: str, source: str) -> Answer:
    return Answer(exercise, label, source, caught_by, message)


WRONG = [
    # --- 00 -----------------------------------------------------------------------------------------------------
    wrong("trimap_to_mask", "border counted as background", "public", "a trimap of border pixels (value 3)", '''
def trimap_to_mask(trimap):
    return (trimap == 1).astype(np.uint8)
'''),
    wrong("trimap_to_mask", "changes the trimap in place", "public", "passed in is left unchanged", '''
def trimap_to_mask(trimap):
    trimap[trimap == 3] = 1
    trimap[trimap == 2] = 0
    return trimap.astype(np.uint8)
'''),
    wrong("trimap_to_mask", "returns booleans", "public", "dtype of the mask", '''
def trimap_to_mask(trimap):
    return np.isin(trimap, (1, 3))
'''),
    wrong("trimap_to_mask", "keeps the trimap's dtype", "hidden", "dtype of the mask of a int32 trimap", '''
def trimap_to_mask(trimap):
    return np.where(trimap == 2, 0, 1).astype(trimap.dtype)
'''),
    # --- 01 -----------------------------------------------------------------------------------------------------
    wrong("DoubleConv", "no padding", "public", "shape", '''
class DoubleConv(nn.Sequential):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        mid = mid_channels or out_channels
        super().__init__(nn.Conv2d(in_channels, mid, 3, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                         nn.Conv2d(mid, out_channels, 3, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())
'''),
    wrong("DoubleConv", "convolutions with a bias", "public", "the names of the weights", '''
class DoubleConv(nn.Sequential):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        mid = mid_channels or out_channels
        super().__init__(nn.Conv2d(in_channels, mid, 3, padding=1), nn.BatchNorm2d(mid), nn.ReLU(),
                         nn.Conv2d(mid, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU())
'''),
    wrong("DoubleConv", "mid_channels ignored", "public", "DoubleConv(8, 4, 6)", '''
class DoubleConv(nn.Sequential):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())
'''),
    wrong("DoubleConv", "dropout after each block", "hidden", "in train mode", '''
class DoubleConv(nn.Sequential):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        mid = mid_channels or out_channels
        super().__init__(nn.Conv2d(in_channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                         nn.Conv2d(mid, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
                         nn.Dropout(0.2))
'''),
    wrong("DoubleConv", "its own layer names", "public", "the names of the weights", '''
class DoubleConv(nn.Module):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__()
        mid = mid_channels or out_channels
        self.conv1 = nn.Conv2d(in_channels, mid, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
'''),
    wrong("DoubleConv", "raises inside forward", "public", "raised RuntimeError: mat1 and mat2 shapes cannot be multiplied", '''
class DoubleConv(nn.Sequential):
    def __init__(self, in_channels, out_channels, mid_channels=None):
        mid = mid_channels or out_channels
        super().__init__(nn.Conv2d(in_channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                         nn.Conv2d(mid, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied\\nsecond line")
'''),
    wrong("Down", "convolution before the pool", "public", "the names of the weights", '''
class Down(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__(DoubleConv(in_channels, out_channels), nn.MaxPool2d(2))
'''),
    wrong("Down", "average pooling", "public", "output of Down(4, 8)", '''
class Down(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__(nn.AvgPool2d(2), DoubleConv(in_channels, out_channels))
'''),
    wrong("Up", "upsamples 2x and pads to the skip", "public", "Up(16, 4", '''
class Up(nn.Module):
    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        self.up_conv = None if bilinear else nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2 if bilinear else None)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False) if self.up_conv is None else self.up_conv(x)
        x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
        return self.conv(torch.cat([skip, x], dim=1))
'''),
    wrong("Up", "x before the skip", "public", "output of Up(16, 4, bilinear=True)", '''
class Up(nn.Module):
    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        self.up_conv = None if bilinear else nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2 if bilinear else None)

    def forward(self, x, skip):
        if self.up_conv is None:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        else:
            x = self.up_conv(x, output_size=skip.shape[-2:])
        return self.conv(torch.cat([x, skip], dim=1))
'''),
    wrong("Up", "no skip", "public", "the shapes of the weights", '''
class Up(nn.Module):
    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        self.up_conv = None
        self.conv = DoubleConv(in_channels // 2, out_channels)

    def forward(self, x, skip):
        return self.conv(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
'''),
    wrong("UNet", "no skips", "public", "UNet(base_width=8, bilinear=True)", '''
class UNet(nn.Module):
    pad_multiple = 32

    def __init__(self, in_channels=3, out_channels=1, base_width=64, bilinear=True):
        super().__init__()
        w, factor = base_width, 2 if bilinear else 1
        self.input_block = DoubleConv(in_channels, w)
        self.down1, self.down2 = Down(w, 2 * w), Down(2 * w, 4 * w)
        self.down3, self.down4 = Down(4 * w, 8 * w), Down(8 * w, 16 * w // factor)
        self.up1 = DoubleConv(16 * w // factor, 8 * w // factor)
        self.up2 = DoubleConv(8 * w // factor, 4 * w // factor)
        self.up3 = DoubleConv(4 * w // factor, 2 * w // factor)
        self.up4 = DoubleConv(2 * w // factor, w)
        self.output_conv = nn.Conv2d(w, out_channels, 1)
        init_weights(self)
        self.output_conv.reset_parameters()

    def forward(self, images):
        height, width = images.shape[-2:]
        x = self.down4(self.down3(self.down2(self.down1(self.input_block(pad_to_multiple(images, 32))))))
        for up in (self.up1, self.up2, self.up3, self.up4):
            x = up(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.output_conv(x)[..., :height, :width]
'''),
] + [
    # UNet variants of the master: each changes one thing.
    wrong("UNet", label, caught, message, '''
class UNet(nn.Module):
    pad_multiple = 32

    def __init__(self, in_channels=3, out_channels=1, base_width=64, bilinear=True):
        super().__init__()
        w, factor = base_width, 2 if bilinear else 1
        self.input_block = DoubleConv($IN, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 16 * w // factor)
        self.up1 = Up(16 * w, 8 * w // factor, bilinear)
        self.up2 = Up(8 * w, 4 * w // factor, bilinear)
        self.up3 = Up(4 * w, 2 * w // factor, bilinear)
        self.up4 = Up(2 * w, w, bilinear)
        self.output_conv = nn.Conv2d(w, $OUT, kernel_size=1)
        $SETUP

    def forward(self, images):
        height, width = images.shape[-2:]
        x1 = self.input_block($PAD)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up4(self.up3(self.up2(self.up1(x5, x4), x3), x2), x1)
        return self.output_conv(x)$CROP
'''.replace("$IN", changes.get("IN", "in_channels")).replace("$OUT", changes.get("OUT", "out_channels"))
        .replace("$SETUP", changes.get("SETUP", "init_weights(self)\n        self.output_conv.reset_parameters()"))
        .replace("$PAD", changes.get("PAD", "pad_to_multiple(images, self.pad_multiple)"))
        .replace("$CROP", changes.get("CROP", "[..., :height, :width]")))
    for label, caught, message, changes in [
        ("no padding to a multiple of 32", "public", "UNet(base_width=4)", {"PAD": "images"}),
        ("no crop back to the input's size", "public", "UNet(base_width=4)", {"CROP": "", "PAD": "pad_to_multiple(images, 32)"}),
        ("in_channels hard-coded to 3", "hidden", "in_channels=1", {"IN": "3"}),
        ("out_channels hard-coded to 1", "hidden", "out_channels=3", {"OUT": "1"}),
        ("init_weights left out", "hidden", "the initial values of", {"SETUP": "pass"}),
        ("output_conv not reset after init_weights", "hidden", "the initial values of output_conv.weight",
         {"SETUP": "init_weights(self)"}),
    ]
] + [
    # --- 02 -----------------------------------------------------------------------------------------------------
    wrong("BasicBlock", label, caught, message, '''
class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if $CONDITION:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return $RESULT
'''.replace("$CONDITION", changes.get("CONDITION", "stride != 1 or in_channels != out_channels"))
        .replace("$RESULT", changes.get("RESULT", "self.relu(out + shortcut)")))
    for label, caught, message, changes in [
        ("a projection only when the width changes", "hidden", "BasicBlock(16, 16, 2)",
         {"CONDITION": "in_channels != out_channels"}),
        ("a projection only when the stride changes", "hidden", "BasicBlock(16, 32, 1)", {"CONDITION": "stride != 1"}),
        ("no projection at all", "public", "BasicBlock(16, 32, 2)", {"CONDITION": "False"}),
        ("no ReLU after the sum", "public", "output of BasicBlock(16, 16, 1)", {"RESULT": "out + shortcut"}),
        ("ReLU before the sum", "public", "output of BasicBlock(16, 16, 1)", {"RESULT": "self.relu(out) + shortcut"}),
    ]
] + [
    wrong("make_stage", "the stride in every block", "public", "make_stage(16, 32, 3, 2)", '''
def make_stage(in_channels, out_channels, num_blocks, stride):
    blocks = [BasicBlock(in_channels, out_channels, stride)]
    blocks += [BasicBlock(out_channels, out_channels, stride) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)
'''),
    wrong("make_stage", "one block too many", "public", "the number of blocks", '''
def make_stage(in_channels, out_channels, num_blocks, stride):
    blocks = [BasicBlock(in_channels, out_channels, stride)]
    blocks += [BasicBlock(out_channels, out_channels) for _ in range(num_blocks)]
    return nn.Sequential(*blocks)
'''),
] + [
    wrong("ResNet34Encoder", label, caught, message, '''
class ResNet34Encoder(nn.Module):
    def __init__(self, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d($IN, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = $POOL
        self.layer1 = make_stage(64, 64, 3, 1)
        self.layer2 = make_stage(64, 128, 4, 2)
        self.layer3 = make_stage(128, 256, 6, 2)
        self.layer4 = make_stage(256, 512, 3, 2)

    def forward(self, x):
        x1 = self.relu(self.bn1(self.conv1(x)))
        x2 = self.layer1(self.maxpool(x1))
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        return $X1, x2, x3, x4, self.layer4(x4)
'''.replace("$IN", changes.get("IN", "in_channels")).replace("$POOL", changes.get("POOL", "nn.MaxPool2d(3, stride=2, padding=1)"))
        .replace("$X1", changes.get("X1", "x1")))
    for label, caught, message, changes in [
        ("no max-pool", "public", "output 2 of ResNet34Encoder()", {"POOL": "nn.Identity()"}),
        ("x1 after the max-pool", "public", "output 1 of ResNet34Encoder()", {"X1": "self.maxpool(x1)"}),
        ("in_channels hard-coded to 3", "hidden", "ResNet34Encoder(1)", {"IN": "3"}),
    ]
] + [
    wrong("ResNet34UNet", label, caught, message, '''
class ResNet34UNet(nn.Module):
    pad_multiple = 32

    def __init__(self, in_channels=3, out_channels=1, decoder_widths=(256, 128, 64, 32, 16)):
        super().__init__()
        w = decoder_widths
        self.encoder = ResNet34Encoder($IN)
        self.up1 = DecoderBlock(512, 256, w[0])
        self.up2 = DecoderBlock(w[0], 128, w[1])
        self.up3 = DecoderBlock(w[1], 64, w[2])
        self.up4 = DecoderBlock(w[2], 64, w[3])
        self.up5 = DecoderBlock(w[3], 0, w[4])
        self.output_conv = nn.Conv2d(w[4], $OUT, kernel_size=1)
        $SETUP

    def forward(self, images):
        height, width = images.shape[-2:]
        x1, x2, x3, x4, x5 = self.encoder($PAD)
        x = self.up4(self.up3(self.up2(self.up1(x5, x4), x3), x2), x1)
        return self.output_conv(self.up5(x))[..., :height, :width]
'''.replace("$IN", changes.get("IN", "in_channels")).replace("$OUT", changes.get("OUT", "out_channels"))
        .replace("$SETUP", changes.get("SETUP", "init_weights(self)\n        self.output_conv.reset_parameters()"))
        .replace("$PAD", changes.get("PAD", "pad_to_multiple(images, self.pad_multiple)")))
    for label, caught, message, changes in [
        ("no padding to a multiple of 32", "public", "ResNet34UNet(decoder_widths=(16, 8, 8, 8, 8))", {"PAD": "images"}),
        ("in_channels hard-coded to 3", "hidden", "in_channels=1", {"IN": "3"}),
        ("out_channels hard-coded to 1", "hidden", "out_channels=2", {"OUT": "1"}),
        ("init_weights left out", "hidden", "the initial values of", {"SETUP": "pass"}),
    ]
] + [
    # --- 03 -----------------------------------------------------------------------------------------------------
    wrong("segmentation_loss", "soft Dice pooled over the batch", "public", "a large and a small pet", '''
def segmentation_loss(logits, masks):
    p, t = torch.sigmoid(logits[:, 0]), masks.float()
    dice = (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits[:, 0], t) + 1 - dice
'''),
    wrong("segmentation_loss", "no smoothing", "public", "an empty target predicted confidently empty", '''
def segmentation_loss(logits, masks):
    p, t = torch.sigmoid(logits[:, 0]), masks.float()
    dice = 2 * (p * t).sum((1, 2)) / (p.sum((1, 2)) + t.sum((1, 2)))
    return F.binary_cross_entropy_with_logits(logits[:, 0], t) + (1 - dice).mean()
'''),
    wrong("segmentation_loss", "cross-entropy of sigmoid(logits)", "hidden", "confident wrong logits", '''
def segmentation_loss(logits, masks):
    p, t = torch.sigmoid(logits[:, 0]), masks.float()
    dice = (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    return F.binary_cross_entropy(p, t) + (1 - dice).mean()
'''),
    wrong("segmentation_loss", "Dice of thresholded predictions", "public", "the loss on a large and a small pet", '''
def segmentation_loss(logits, masks):
    p, t = (torch.sigmoid(logits[:, 0]) > 0.5).float(), masks.float()
    dice = (2 * (p * t).sum((1, 2)) + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    return F.binary_cross_entropy_with_logits(logits[:, 0], t) + (1 - dice).mean()
'''),
] + [
    wrong("training_step", label, caught, message, '''
def my_training_step(state, images, masks):
    loss = state.loss_fn($MODEL(images), masks)
    $ZERO
    loss.backward()
    state.optimizer.step()
    $SCHEDULE
    return $RESULT
'''.replace("$MODEL", changes.get("MODEL", "state.step_model")).replace("$ZERO", changes.get("ZERO", "state.optimizer.zero_grad()"))
        .replace("$SCHEDULE", changes.get("SCHEDULE", "state.scheduler.step()")).replace("$RESULT", changes.get("RESULT", "loss.detach()")))
    for label, caught, message, changes in [
        ("gradients never cleared", "public", "the weights after step 2", {"ZERO": "pass"}),
        ("no scheduler step", "public", "schedule's position after step 1", {"SCHEDULE": "pass"}),
        ("the loss not detached", "public", "is detached", {"RESULT": "loss"}),
        ("state.model instead of state.step_model", "hidden", "calls of state.step_model", {"MODEL": "state.model"}),
    ]
] + [
    wrong("train_one_epoch", label, caught, message, '''
def my_train_one_epoch(state, train, batch_size):
    $TRAIN
    total, seen = 0.0, 0
    for indices in $BATCHES:
        images, masks = prepare_batch(state, train, indices)
        total += my_training_step(state, images, masks).item() * len(indices)
        seen += len(indices)
    return $RESULT
'''.replace("$TRAIN", changes.get("TRAIN", "state.step_model.train()"))
        .replace("$BATCHES", changes.get("BATCHES", "shuffled_batches(len(train), batch_size, state.generator)"))
        .replace("$RESULT", changes.get("RESULT", "total / seen")))
    for label, caught, message, changes in [
        ("left in eval mode", "public", "is in train mode after the epoch", {"TRAIN": "pass"}),
        ("returns a tensor", "public", "is a Python float", {"RESULT": "torch.tensor(total / seen)"}),
        ("its own shuffling", "public", "the epoch's mean loss", {"BATCHES": "torch.randperm(len(train)).split(batch_size)"}),
        ("state.model put in train mode", "public", "state.step_model is in train mode", {"TRAIN": "state.model.train()"}),
    ]
] + [
    # --- 04 -----------------------------------------------------------------------------------------------------
    wrong("dice_iou", label, caught, message, '''
def dice_per_image(logits, truth, threshold=0.5):
    logits = logits[:, 0] if logits.dim() == 4 else logits
    scored = $SCORED
    predicted = ($PREDICTED) & scored
    pet = (truth == 1) & scored
    tp = (predicted & pet).sum($SUM).float()
    fp = (predicted & ~pet).sum($SUM).float()
    fn = (~predicted & pet).sum($SUM).float()
    return torch.where(tp + fp + fn == 0, $EMPTY, 2 * tp / (2 * tp + fp + fn).clamp_min(1))$RESULT


def iou_per_image(logits, truth, threshold=0.5):
    logits = logits[:, 0] if logits.dim() == 4 else logits
    scored = truth != metrics.IGNORE_INDEX
    predicted = (torch.sigmoid(logits) > threshold) & scored
    pet = (truth == 1) & scored
    tp, fp, fn = ((predicted & pet).sum((1, 2)).float(), (predicted & ~pet).sum((1, 2)).float(),
                  (~predicted & pet).sum((1, 2)).float())
    return torch.where(tp + fp + fn == 0, 1.0, tp / (tp + fp + fn).clamp_min(1))
'''.replace("$SCORED", changes.get("SCORED", "truth != metrics.IGNORE_INDEX"))
        .replace("$PREDICTED", changes.get("PREDICTED", "torch.sigmoid(logits) > threshold"))
        .replace("$SUM", changes.get("SUM", "(1, 2)")).replace("$EMPTY", changes.get("EMPTY", "1.0"))
        .replace("$RESULT", changes.get("RESULT", "")))
    for label, caught, message, changes in [
        ("Dice pooled over the batch", "public", "the scores of three 4x4 images", {"SUM": ""}),
        ("empty against empty scores 0", "public", "dice_per_image failed the case: Dice of three 4x4", {"EMPTY": "0.0"}),
        ("the logit thresholded, not the probability", "public", "logits of 0.3", {"PREDICTED": "logits > threshold"}),
        ("at or above the threshold", "hidden", "logits exactly 0", {"PREDICTED": "torch.sigmoid(logits) >= threshold"}),
        ("ignored pixels scored as background", "hidden", "ignored (255) pixels", {"SCORED": "truth >= 0"}),
        ("integer scores", "public", "are floats", {"RESULT": ".round().long()"}),
    ]
] + [
    wrong("dice_iou", "IoU from thresholded logits", "public", "iou_per_image failed the case: IoU of logits of 0.3", '''
def dice_per_image(logits, truth, threshold=0.5):
    logits = logits[:, 0] if logits.dim() == 4 else logits
    scored = truth != metrics.IGNORE_INDEX
    predicted, pet = (torch.sigmoid(logits) > threshold) & scored, (truth == 1) & scored
    tp, fp, fn = ((predicted & pet).sum((1, 2)).float(), (predicted & ~pet).sum((1, 2)).float(),
                  (~predicted & pet).sum((1, 2)).float())
    return torch.where(tp + fp + fn == 0, 1.0, 2 * tp / (2 * tp + fp + fn).clamp_min(1))


def iou_per_image(logits, truth, threshold=0.5):
    logits = logits[:, 0] if logits.dim() == 4 else logits
    predicted, pet = logits > threshold, truth == 1
    union = (predicted | pet).sum((1, 2)).float()
    return torch.where(union > 0, (predicted & pet).sum((1, 2)).float() / union.clamp_min(1), 1.0)
'''),
] + [
    # --- 05 -----------------------------------------------------------------------------------------------------
    wrong("mask_at_photo_size", label, caught, message, '''
def mask_at_photo_size(logits, height, width, threshold=0.5):
    $BODY
'''.replace("$BODY", body))
    for label, caught, message, body in [
        ("argmax over one channel", "public", "confident pet logits (+5)",
         "return F.interpolate(logits, size=(height, width), mode='bilinear').argmax(dim=1).bool()"),
        ("the mask resized after thresholding", "public", "random logits (1, 1, 16, 16)",
         "return F.interpolate((torch.sigmoid(logits) > threshold).float(), size=(height, width))[:, 0].bool()"),
        ("width first", "public", "the shape of the mask",
         "return torch.sigmoid(F.interpolate(logits, size=(width, height), mode='bilinear'))[:, 0] > threshold"),
        ("batch dimension dropped", "public", "the shape of the mask",
         "return torch.sigmoid(F.interpolate(logits, size=(height, width), mode='bilinear'))[0, 0] > threshold"),
        ("corners aligned", "public", "random logits (1, 1, 16, 16)",
         "return torch.sigmoid(F.interpolate(logits, size=(height, width), mode='bilinear', align_corners=True))[:, 0] > threshold"),
    ]
]


TRICKS = [
    Answer("UNet", "labkit's UNet by another name", "UNet = models.UNet", message="`models`"),
    Answer("DoubleConv", "a subclass of labkit's block", "class DoubleConv(models.unet.DoubleConv):\n    pass", message="`models`"),
    Answer("dice_iou", "labkit's Dice called", "def dice_per_image(logits, truth, threshold=0.5):\n"
           "    return metrics.dice_per_image(logits, truth, threshold)\n\n"
           "def iou_per_image(logits, truth, threshold=0.5):\n    return metrics.iou_per_image(logits, truth, threshold)",
           message="`metrics`"),
    Answer("training_step", "labkit's step by another name", "my_training_step = training_step", message="`training_step`"),
    Answer("train_one_epoch", "labkit's epoch imported", "from labkit.train import train_one_epoch as my_train_one_epoch",
           message="imports labkit.train"),
    Answer("segmentation_loss", "labkit's loss", "segmentation_loss = losses.SegmentationLoss()", message="`losses`"),
    Answer("mask_at_photo_size", "the check's own reference", "from labkit.course.checks.pipeline import masks_at as "
           "mask_at_photo_size", message="imports labkit.course.checks.pipeline"),
    Answer("UNet", "the master read from disk", "import pathlib\nsource = pathlib.Path('notebooks').read_text()",
           message="imports pathlib"),
    Answer("UNet", "the master read through labkit's file", "exec(open(str(labkit.__file__)).read())", message="`exec`"),
    Answer("DoubleConv", "checks rebound", "checks = None", message="rebinds `checks`"),
    Answer("DoubleConv", "a check switched off", "import labkit.course.checks\n"
           "labkit.course.checks.check_double_conv = lambda *args, **kwargs: None", message="imports labkit"),
    Answer("DoubleConv", "IPython told to skip every later cell",
           "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass'])", message="`get_ipython`"),
    Answer("DoubleConv", "sys.modules patched", "import sys\nsys.modules['labkit.course.checks'] = None", message="imports sys"),
    Answer("DoubleConv", "sys reached through torch", "modules = torch.sys.modules", message="the attribute `sys`"),
    Answer("DoubleConv", "builtins patched", "import builtins\nbuiltins.print = None", message="imports builtins"),
    Answer("DoubleConv", "a global rebound from a function", "def rebind():\n    global checks\n    checks = None\nrebind()",
           message="declares `checks` global"),
    Answer("DoubleConv", "torch patched", "torch.allclose = lambda *args, **kwargs: True", message="changes `torch.allclose`"),
    Answer("DoubleConv", "a dunder walk to every class", "classes = ().__class__.__base__.__subclasses__()",
           message="`__subclasses__`"),
    Answer("DoubleConv", "a computed attribute name", "place = getattr(torch, 'sy' + 's')", message="computed name"),
    Answer("DoubleConv", "eval of text", "DoubleConv = eval('models.unet.DoubleConv')", message="`eval`"),
    Answer("DoubleConv", "a comparison that is always true",
           "class DoubleConv(nn.Sequential):\n    def __eq__(self, other):\n        return True", message="__eq__"),
    Answer("DoubleConv", "a tensor subclass that fakes arithmetic",
           "class Fake(torch.Tensor):\n    def __torch_function__(cls, *args, **kwargs):\n        return 0",
           message="__torch_function__"),
    Answer("DoubleConv", "the grader killed", "import os\nos.kill(os.getppid(), 9)", message="imports os"),
    Answer("DoubleConv", "a frame walk", "def f():\n    yield\nframe = f().gi_frame.f_back", message="the attribute `f_back`"),
    Answer("DoubleConv", "the stand-in helper replaced", "def pad_to_multiple(images, multiple):\n    return images",
           message="a name the notebook already uses"),
]
