import pytest
import torch

from emotion_core.config import ModelConfig
from emotion_core.model import HybridEmotionCNN, count_trainable_parameters


def test_parameter_budget():
    n = count_trainable_parameters(HybridEmotionCNN(num_layers=7, hidden_size=512))
    assert 30_000 <= n <= 100_000, n


@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(use_mel_branch=False), ModelConfig(use_frames_branch=False, use_layer_weights=False)])
def test_padding_is_masked(cfg):
    """A clip in a padded batch gets the same logits as alone (so batching never changes a prediction)."""
    torch.manual_seed(0)
    model = HybridEmotionCNN(7, 64, cfg).eval()
    hidden, mel = torch.randn(2, 7, 150, 64), torch.randn(2, 80, 301)
    batch = model(hidden, torch.tensor([150, 101]), mel, torch.tensor([301, 203]))
    alone = model(hidden[1:, :, :101], torch.tensor([101]), mel[1:, :, :203], torch.tensor([203]))
    assert torch.allclose(batch[1], alone[0], atol=1e-5)
    assert batch.shape == (2, 8)


def test_needs_a_branch():
    with pytest.raises(ValueError):
        HybridEmotionCNN(7, 64, ModelConfig(use_frames_branch=False, use_mel_branch=False))
