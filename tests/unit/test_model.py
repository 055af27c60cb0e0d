import pytest
import torch

from emotion_core.config import ModelConfig
from emotion_core.head.model import HybridEmotionCNN, count_trainable_parameters


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


def test_pooled_clips_keep_their_own_frames_and_batch_like_alone():
    """Frames and log-mel are pooled once per clip (`training.prepare`): a last, partial cell averages the frames
    the clip has (not padding), and a padded batch of pooled clips gives each clip's logits alone."""
    from emotion_core.head.batching import collate, prepare
    from emotion_core.head.clip_features import ClipFeatures

    torch.manual_seed(0)
    cfg = ModelConfig(frame_pool=2, mel_pool=2)
    raw = [ClipFeatures(torch.randn(7, 150, 64).half(), torch.randn(80, 301).half()),
           ClipFeatures(torch.randn(7, 101, 64).half(), torch.randn(80, 203).half())]  # odd lengths: half cells
    clips = prepare(cfg, raw)
    short = clips[1]
    assert short.hidden.shape == (7, 51, 64) and short.mel.shape == (40, 102) and short.mel.dtype == torch.float32
    torch.testing.assert_close(short.mel[:, -1], raw[1].mel[:, -1].float().reshape(40, 2).mean(-1))  # 2 bins × 1 frame
    torch.testing.assert_close(short.mel[:, 0], raw[1].mel[:, :2].float().reshape(40, 2, 2).mean((1, 2)))
    assert prepare(cfg, clips)[1] is short  # idempotent: the same object (memos are keyed by it)
    model = HybridEmotionCNN(7, 64, cfg).eval()
    batch, alone = collate(clips).logits(model), collate(clips[1:]).logits(model)
    assert torch.allclose(batch[1], alone[0], atol=1e-5)


def test_needs_a_branch():
    with pytest.raises(ValueError):
        HybridEmotionCNN(7, 64, ModelConfig(use_frames_branch=False, use_mel_branch=False, use_stats_branch=False))


def test_float16_frames_give_the_float32_logits_and_gradients():
    """The head reads cached float16 frames as they are (layer mix with its own backward): same logits and
    same gradients as the float32 frames, the mixing weights included."""
    torch.manual_seed(0)
    cfg = ModelConfig(use_stats_branch=True, stats_layers=[1, 2])
    hidden16 = torch.randn(3, 7, 40, 64).half()
    mel, lengths, mel_lengths = torch.randn(3, 80, 80), torch.tensor([40, 31, 20]), torch.tensor([80, 62, 40])
    grads, logits = [], []
    for hidden in (hidden16, hidden16.float()):
        torch.manual_seed(1)
        model = HybridEmotionCNN(7, 64, cfg).eval()
        with torch.no_grad():
            model.frames.layer_logits.copy_(torch.randn(7))
        out = model(hidden, lengths, mel, mel_lengths)
        out.square().sum().backward()
        logits.append(out.detach())
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-5)
    assert grads[0].keys() == grads[1].keys() and "frames.layer_logits" in grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5, msg=name)


def test_layer_mix_matches_einsum_forward_and_backward():
    from emotion_core.head.model import _LayerMix

    torch.manual_seed(0)
    hidden = torch.randn(2, 7, 30, 16).half()
    logits = torch.randn(7, requires_grad=True)
    upstream = torch.randn(2, 30, 16)
    hidden[1, :, 21:] = 0  # the second clip is 21 frames long: the mix reads each clip at its own length
    ours = _LayerMix.apply(torch.softmax(logits, 0), [hidden[0], hidden[1, :, :21]], 30)
    (grad_ours,) = torch.autograd.grad((ours * upstream).sum(), logits)
    reference = torch.einsum("l,bltd->btd", torch.softmax(logits, 0), hidden.float())
    (grad_ref,) = torch.autograd.grad((reference * upstream).sum(), logits)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(grad_ours, grad_ref)
