import pytest
import torch

from labkit import data
from labkit.evaluate import evaluate, predict_logits, score_tensors
from labkit.metrics import dice_from_counts

from fakes import ConstantLogit


def all_pet_dice(mask: torch.Tensor) -> float:
    """Dice of an all-pet prediction: 2|T| / (|T| + all pixels)."""
    pet = (mask == 1).sum()
    return dice_from_counts(pet[None], (mask == 0).sum()[None], torch.zeros(1, dtype=torch.long)).item()


def test_resized_scores_match_the_masks_at_the_training_size(synthetic_root):
    result = evaluate(ConstantLogit(5.0), split="test", root=synthetic_root, image_size=48, progress=False)
    arrays = data.load_split(synthetic_root, "test", size=48, progress=False)
    expected = [all_pet_dice(torch.from_numpy(mask)) for mask in arrays.masks()]
    assert [row["dice"] for row in result.per_image] == pytest.approx(expected)
    assert result.metrics["resized"]["dice"] == pytest.approx(sum(expected) / len(expected))


def test_original_scores_compare_with_the_untouched_trimaps(synthetic_root):
    result = evaluate(ConstantLogit(5.0), split="test", root=synthetic_root, image_size=48, progress=False)
    samples = data.read_split(synthetic_root, "test")
    expected = [all_pet_dice(torch.from_numpy(data.trimap_to_mask(data.load_trimap(s.trimap_path)))) for s in samples]
    assert [row["dice_original"] for row in result.per_image] == pytest.approx(expected)


def test_per_image_table_describes_each_photo(synthetic_root):
    result = evaluate(ConstantLogit(-5.0), split="valid", root=synthetic_root, image_size=32, progress=False)
    samples = data.read_split(synthetic_root, "valid")
    assert [row["name"] for row in result.per_image] == [s.name for s in samples]
    assert {"breed", "species", "height", "width", "iou", "iou_original"} <= set(result.per_image[0])


def test_evaluation_restores_the_models_training_mode(synthetic_root):
    model = ConstantLogit(1.0).train()
    evaluate(model, split="valid", root=synthetic_root, image_size=32, progress=False)
    assert model.training
    score_tensors(model, torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 8, 8, dtype=torch.uint8))
    assert model.training


def test_flip_averaging_leaves_a_mirror_symmetric_model_unchanged(synthetic_root):
    plain = evaluate(ConstantLogit(3.0), split="valid", root=synthetic_root, image_size=32, progress=False)
    flipped = evaluate(ConstantLogit(3.0), split="valid", root=synthetic_root, image_size=32, tta=True, progress=False)
    assert plain.metrics == flipped.metrics and flipped.info["tta"] is True


def test_evaluation_mode_is_restored_even_when_the_pass_fails():
    from labkit.evaluate import evaluation_mode

    model = ConstantLogit(1.0).train()
    with pytest.raises(RuntimeError):
        with evaluation_mode(model):
            assert not model.training
            raise RuntimeError("out of memory")
    assert model.training


def test_a_model_without_its_checkpoint_must_be_told_its_size(synthetic_root):
    """The old fallback scored a 128 px model at 256 px without a word."""
    with pytest.raises(ValueError, match="image_size="):
        evaluate(ConstantLogit(1.0), split="valid", root=synthetic_root, progress=False)


def test_a_trained_model_is_scored_at_its_own_training_size(synthetic_root, tmp_path):
    from labkit.checkpoint import load_trained
    from labkit.config import make_config
    from labkit.train import fit

    config = make_config("unet", "smoke", data_root=str(synthetic_root), output_dir=str(tmp_path), image_size=32,
                         epochs=1, train_limit=8)
    trained = load_trained(fit(config, progress=False).best_checkpoint)
    assert evaluate(trained, split="valid", progress=False).info["image_size"] == 32


def test_predict_logits_uses_eval_mode_and_restores_the_mode():
    from labkit.evaluate import predict_logits

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.BatchNorm2d(1)).train()
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    logits = predict_logits(model, images)
    model.eval()
    with torch.inference_mode():
        expected = model(data.normalize(images))
    assert torch.allclose(logits, expected)
    model.train()
    predict_logits(model, images)
    assert model.training


class MeanOfPhoto(torch.nn.Module):
    """Each photo's mean value as its logit, noting how many photos came in each call."""

    def __init__(self):
        super().__init__()
        self.weight, self.seen = torch.nn.Parameter(torch.ones(())), []

    def forward(self, images):
        self.seen.append(len(images))
        return self.weight * images.mean((1, 2, 3), keepdim=True).expand(-1, 1, *images.shape[2:])


def test_predict_logits_feeds_the_network_a_batch_at_a_time_and_keeps_the_photos_order():
    from labkit.evaluate import predict_logits

    model = MeanOfPhoto()
    images = torch.arange(7, dtype=torch.uint8)[:, None, None, None].expand(7, 3, 4, 4) * 30
    logits = predict_logits(model, images, batch_size=3)
    assert model.seen == [3, 3, 1]
    assert torch.allclose(logits[:, 0, 0, 0], data.normalize(images).mean((1, 2, 3)))


def test_a_batch_size_above_predict_logits_default_reaches_the_network():
    model = MeanOfPhoto()
    score_tensors(model, torch.zeros(40, 3, 8, 8, dtype=torch.uint8), torch.zeros(40, 8, 8, dtype=torch.uint8),
                  batch_size=40)
    assert model.seen == [40]


def test_predict_logits_of_no_photos_is_empty_and_a_batch_size_below_one_is_refused():
    from labkit.evaluate import predict_logits

    assert predict_logits(MeanOfPhoto(), torch.zeros(0, 3, 8, 8, dtype=torch.uint8)).shape == (0, 1, 8, 8)
    with pytest.raises(ValueError, match="batch_size"):
        predict_logits(MeanOfPhoto(), torch.zeros(2, 3, 8, 8, dtype=torch.uint8), batch_size=0)


def test_evaluate_refuses_a_batch_size_of_zero_before_decoding(synthetic_root):
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(ConstantLogit(1.0), split="valid", root=synthetic_root, image_size=32, batch_size=0)


def disc_logits(size: int, radius: float) -> torch.Tensor:
    """(1, size, size) logits: the signed distance (in pixels) inside a disc centred in the image."""
    centre = (size - 1) / 2
    rows, columns = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
    return (radius - torch.hypot(rows.float(), columns.float()))[None]


def test_mask_at_size_either_resizes_logits_or_enlarges_the_thresholded_mask():
    from labkit.evaluate import mask_at_size

    logits = disc_logits(8, 2.5)
    blocky = mask_at_size(logits, (32, 32), order="mask")
    # Thresholding first and enlarging with nearest neighbour repeats each network pixel 4x4.
    assert torch.equal(blocky, (logits[0] > 0).repeat_interleave(4, 0).repeat_interleave(4, 1))
    smooth = mask_at_size(logits, (32, 32), order="logits")
    expected = torch.nn.functional.interpolate(logits[None], size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(smooth, expected[0, 0] > 0)
    assert not torch.equal(smooth, blocky)
    with pytest.raises(ValueError):
        mask_at_size(logits, (32, 32), order="nearest")


def test_resizing_logits_follows_a_round_outline_better_than_enlarging_the_mask():
    from labkit.evaluate import mask_at_size
    from labkit.metrics import dice_per_image

    truth = (disc_logits(64, 20.0) > 0).to(torch.uint8)  # the disc at full resolution
    logits = disc_logits(8, 20.0 / 8)  # the same disc as a network would see it, 8x smaller
    scores = {order: dice_per_image(mask_at_size(logits, (64, 64), order)[None, None].float() * 20 - 10, truth).item()
              for order in ("logits", "mask")}
    assert scores["logits"] > scores["mask"]


def test_dice_by_upsampling_order_scores_every_photo_both_ways(synthetic_root):
    from labkit.evaluate import dice_by_upsampling_order

    arrays = data.load_split(synthetic_root, "valid", size=32, progress=False)
    scores = dice_by_upsampling_order(torch.full((len(arrays), 1, 32, 32), 5.0), arrays)
    samples = data.read_split(synthetic_root, "valid")
    expected = [all_pet_dice(torch.from_numpy(data.trimap_to_mask(data.load_trimap(s.trimap_path)))) for s in samples]
    # An all-pet prediction is the same mask whichever way it is enlarged.
    assert scores["logits"] == pytest.approx(expected) and scores["mask"] == pytest.approx(expected)


def test_kept_logits_are_the_models_logits_of_every_photo_in_split_order(synthetic_root):
    from labkit.evaluate import predict_logits
    from labkit.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", base_width=4)
    result = evaluate(model, split="valid", root=synthetic_root, image_size=32, batch_size=3, progress=False,
                      keep_logits=True)
    images, _ = data.to_tensors(data.load_split(synthetic_root, "valid", size=32, progress=False))
    assert result.logits.shape == (len(images), 1, 32, 32)
    assert torch.allclose(result.logits, predict_logits(model, images), atol=1e-5)


def test_logits_are_not_kept_unless_asked(synthetic_root):
    assert evaluate(ConstantLogit(1.0), split="valid", root=synthetic_root, image_size=32, progress=False).logits is None


def test_resizing_the_kept_logits_scores_each_photo_as_evaluate_does_at_original_size(synthetic_root):
    from labkit.evaluate import dice_by_upsampling_order
    from labkit.models import build_model

    torch.manual_seed(0)
    result = evaluate(build_model("unet", base_width=4), split="valid", root=synthetic_root, image_size=32,
                      progress=False, keep_logits=True)
    arrays = data.load_split(synthetic_root, "valid", size=32, progress=False)
    scores = dice_by_upsampling_order(result.logits, arrays)
    assert scores["logits"] == pytest.approx([row["dice_original"] for row in result.per_image])


def test_dice_by_upsampling_order_refuses_logits_of_another_number_of_photos(synthetic_root):
    from labkit.evaluate import dice_by_upsampling_order

    arrays = data.load_split(synthetic_root, "valid", size=32, progress=False)
    with pytest.raises(ValueError, match="one logit map per photo"):
        dice_by_upsampling_order(torch.zeros(len(arrays) + 1, 1, 32, 32), arrays)


class RecordsItsInput(torch.nn.Module):
    """A one-convolution model that notes whether each input it is given is channels_last."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)
        self.channels_last = []

    def forward(self, images):
        self.channels_last.append(images.is_contiguous(memory_format=torch.channels_last)
                                  and not images.is_contiguous())
        return self.conv(images)


@pytest.mark.parametrize("memory_format, expected", [(torch.channels_last, True), (torch.contiguous_format, False)])
def test_a_model_is_given_its_inputs_in_its_own_memory_format(memory_format, expected):
    """On a GPU models are placed channels_last; their inputs must be too, or every layer converts."""
    model = RecordsItsInput().to(memory_format=memory_format)
    predict_logits(model, torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8), tta=True, batch_size=2)
    assert model.channels_last == [expected] * 4  # two batches, each also mirrored


def test_the_logits_orders_counts_pool_to_the_dataset_dice_evaluate_reports_at_original_size(synthetic_root):
    from labkit.evaluate import counts_by_upsampling_order
    from labkit.metrics import dice_from_counts
    from labkit.models import build_model

    torch.manual_seed(0)
    result = evaluate(build_model("unet", base_width=4), split="valid", root=synthetic_root, image_size=32,
                      progress=False, keep_logits=True)
    arrays = data.load_split(synthetic_root, "valid", size=32, progress=False)
    counts = counts_by_upsampling_order(result.logits, arrays)["logits"]
    pooled = dice_from_counts(counts["tp"].sum(), counts["fp"].sum(), counts["fn"].sum()).item()
    assert pooled == pytest.approx(result.metrics["original"]["dice_dataset"])
    assert [len(values) for values in counts.values()] == [len(arrays)] * 4
