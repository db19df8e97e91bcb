import math

import pytest
import torch
from torch import nn

from labkit.evaluate import threshold_sweep

# One row of four pixels whose predicted pet probabilities are 0.2, 0.4, 0.6, 0.8.
PROBABILITIES = [0.2, 0.4, 0.6, 0.8]
PET_ON_THE_RIGHT = [0, 0, 1, 1]
NO_PET = [0, 0, 0, 0]


class FixedLogits(nn.Module):
    """Ignores the photo and returns the same logits for every image."""

    def __init__(self, probabilities: list[float]):
        super().__init__()
        logits = torch.tensor([math.log(p / (1 - p)) for p in probabilities])
        self.logits = nn.Parameter(logits.view(1, 1, 1, -1))

    def forward(self, images):
        return self.logits.expand(images.shape[0], -1, -1, -1)


def photos(count: int) -> torch.Tensor:
    return torch.zeros(count, 3, 1, len(PROBABILITIES), dtype=torch.uint8)


def masks(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.uint8).view(len(rows), 1, -1)


def test_dice_at_each_threshold_matches_a_count_by_hand():
    scores = threshold_sweep(FixedLogits(PROBABILITIES), photos(1), masks(PET_ON_THE_RIGHT), [0.3, 0.5, 0.7, 0.9])
    # 0.3: 3 predicted, 2 right -> 2*2/(3+2); 0.5: exact; 0.7: 1 of 2 found -> 2*1/(1+2); 0.9: none found.
    assert scores == pytest.approx([4 / 5, 1.0, 2 / 3, 0.0])


def test_scores_are_means_over_images_and_empty_versus_empty_counts_as_one():
    scores = threshold_sweep(FixedLogits(PROBABILITIES), photos(2), masks(PET_ON_THE_RIGHT, NO_PET), [0.3, 0.5, 0.9])
    # The petless image scores 0 while anything is predicted and 1 once nothing is (threshold 0.9).
    assert scores == pytest.approx([(4 / 5 + 0) / 2, (1 + 0) / 2, (0 + 1) / 2])


def test_batch_size_does_not_change_the_scores():
    model, images, targets = FixedLogits(PROBABILITIES), photos(3), masks(PET_ON_THE_RIGHT, NO_PET, PET_ON_THE_RIGHT)
    thresholds = [0.1, 0.5, 0.9]
    assert threshold_sweep(model, images, targets, thresholds, batch_size=1) == pytest.approx(
        threshold_sweep(model, images, targets, thresholds, batch_size=32))


def test_the_models_training_mode_is_restored():
    model = FixedLogits(PROBABILITIES).train()
    threshold_sweep(model, photos(1), masks(PET_ON_THE_RIGHT), [0.5])
    assert model.training


@pytest.mark.parametrize("thresholds", [[], [0.0], [1.0], [0.5, 1.5]])
def test_thresholds_must_be_probabilities_strictly_between_zero_and_one(thresholds):
    with pytest.raises(ValueError, match="thresholds"):
        threshold_sweep(FixedLogits(PROBABILITIES), photos(1), masks(PET_ON_THE_RIGHT), thresholds)
