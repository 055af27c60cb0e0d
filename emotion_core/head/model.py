"""The hybrid head trained on top of the frozen encoder.

    hidden states [L, T_i, D] per clip ─► softmax-weighted sum over L ─► LayerNorm ─► 1D CNN ─► mean+std pool ─┐
    log-mel       [B, 40, Tm]  ─► 2D CNN (3 blocks) ──────────────────────────────────────────► mean pool ─────┤
                                                                                                    concat ─► dropout ─► 8 logits
Padding is masked everywhere (clips keep their own length), so a batch gives the same logits as one
clip at a time. The inputs come pooled (`ClipFeatures.pooled` via `training.prepare`): frame_pool encoder
frames per head frame, mel_pool × mel_pool log-mel cells per value (default: 25 Hz frames, 40 bins × 50 Hz).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from emotion_core.config import ModelConfig
from emotion_core.encoders import whisper
from emotion_core.features import N_MELS
from emotion_core.labels import NUM_EMOTIONS

#: Mel frames per encoder frame (Whisper: 100 Hz mel, 50 Hz encoder).
MEL_FRAMES_PER_FRAME = 2


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths → [B, max_len] bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def padded(clips: Sequence[torch.Tensor], max_len: int) -> torch.Tensor:
    """Per-clip [T_i, D] → [B, max_len, D] float32, zero after each clip's end."""
    out = torch.empty(len(clips), max_len, clips[0].shape[-1])
    for row, clip in zip(out, clips):
        row[: clip.shape[0]] = clip
        row[clip.shape[0] :] = 0
    return out


class _LayerMix(torch.autograd.Function):
    """Σ_l w_l · frames[l] per clip in float32, read straight from the (float16) cached frames, into a
    zero-padded [B, T, D] batch.

    The frames are frozen features (no gradient), so the backward needs only the L dot products for
    the weights. An einsum would need the whole [B, L, T, D] batch in float32 first: twice the bytes
    written by the collate and read again by the forward and the backward. This way it stays float16,
    and the clips are never copied into a padded [B, L, T, D] batch at all (`training.collate` passes
    them as they are). Both directions go one clip at a time: a clip's [T, D] float32 block stays in the
    core's L2 cache across the L layers, where the whole batch's would go to memory on every layer."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, clips: Sequence[torch.Tensor], max_len: int) -> torch.Tensor:
        ctx.clips = clips  # frozen inputs: kept as they are (a list cannot go through save_for_backward)
        out = torch.empty(len(clips), max_len, clips[0].shape[-1], dtype=weights.dtype)
        for row, h in zip(out, clips):  # one float32 conversion and one [L] @ [L, T·D] product per clip
            n = h.shape[1]
            torch.matmul(weights[None], h.reshape(h.shape[0], -1).to(weights.dtype), out=row[:n].view(1, -1))
            row[n:] = 0
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # d out / d w_l = frames[l]: per clip, an [L, T·D] @ [T·D] product over its real frames
        return sum(h.reshape(h.shape[0], -1).float() @ g[: h.shape[1]].reshape(-1) for h, g in zip(ctx.clips, grad)), None, None


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, C, T], mask [B, T] → [B, 2C] (mean ‖ std over real frames)."""
    m = mask[:, None, :].to(x.dtype)
    n = m.sum(-1).clamp(min=1.0)
    mean = (x * m).sum(-1) / n
    var = ((x - mean[..., None]) ** 2 * m).sum(-1) / n
    return torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)


class FramesBranch(nn.Module):
    """Layer-weighted encoder frames → 1D CNN → statistics pooling."""

    def __init__(self, num_layers: int, hidden_size: int, cfg: ModelConfig):
        super().__init__()
        self.use_layer_weights = cfg.use_layer_weights
        # Learned mixture of encoder layers (emotion peaks mid-encoder); off → last layer only.
        self.layer_logits = nn.Parameter(torch.zeros(num_layers)) if cfg.use_layer_weights else None
        self.norm = nn.LayerNorm(hidden_size)
        c = cfg.conv_channels
        # 1x1 bottleneck (most of the head's parameters), then a temporal convolution.
        self.pointwise = nn.Sequential(nn.Conv1d(hidden_size, c, kernel_size=1), nn.GELU(), nn.Dropout(cfg.dropout))
        self.temporal = nn.Sequential(nn.Conv1d(c, c, kernel_size=cfg.kernel_size, padding=cfg.kernel_size // 2), nn.GELU())
        self.out_dim = 2 * c

    def layer_weights(self) -> torch.Tensor | None:
        return None if self.layer_logits is None else torch.softmax(self.layer_logits, dim=0)

    def forward(self, clips: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """clips: per clip [L, T_i, D] frames; mask [B, T] (True on real frames) → [B, 2C]."""
        x = (padded([h[-1].float() for h in clips], mask.shape[1]) if self.layer_logits is None
             else _LayerMix.apply(self.layer_weights(), clips, mask.shape[1]))
        # The 1x1 convolution as a matmul over [B, T, D], before the transpose: transposing the 512-wide
        # frames first would copy them (forward and backward); transposing its C-wide output is cheap.
        conv, act, drop = self.pointwise
        x = drop(act(nn.functional.linear(self.norm(x), conv.weight.squeeze(-1), conv.bias))).transpose(1, 2)
        # Zero the padding before the temporal conv so a padded clip sees exactly what it sees alone.
        x = x * mask[:, None, :].to(x.dtype)
        return masked_mean_std(self.temporal(x), mask)


class MelBranch(nn.Module):
    """Log-mel [B, F, Tm] → small 2D CNN → mean over frequency and (real) time.

    The default reads the log-mel averaged over 2 × 2 cells (`model.mel_pool`, done once per clip in
    `ClipFeatures.pooled`): 40 bins at 50 Hz, the encoder's own frame rate. A quarter of the input, so
    roughly a quarter of the branch's cost, with CV UA unchanged (the ablation table in docs/results.md).

    The first convolution has stride 2 and is followed by a pool, so the later blocks run on a
    1/16-size map (about an eighth of the FLOPs). Each block pools right after its convolution, so
    BatchNorm and GELU (memory-bound on CPU) run on the 4x smaller map.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.mel_channels

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.GELU()
            )

        self.blocks = nn.ModuleList([block(1, c, stride=2), block(c, 2 * c), block(2 * c, 2 * c)])
        self.blocks.to(memory_format=torch.channels_last)  # with the input's layout in forward (see there)
        self.strides = [2, 1, 1]
        self.out_dim = 2 * c

    def forward(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        # channels-last: CPU conv/pool kernels for this layout run the branch about twice as fast (NCHW
        # max-pooling was the slow part).
        x, lengths = mel[:, None].contiguous(memory_format=torch.channels_last), mel_lengths
        for block, stride in zip(self.blocks, self.strides):
            # Mask padded time steps before each block (as in FramesBranch), then follow the lengths
            # through the strided conv (ceil) and the pool (floor).
            x = block(x * length_mask(lengths, x.shape[-1])[:, None, None, :].to(x.dtype))
            lengths = ((lengths + stride - 1) // stride // 2).clamp(min=1)
        x = x.mean(dim=2)  # over frequency → [B, C, T']
        m = length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        return (x * m).sum(-1) / m.sum(-1).clamp(min=1.0)


def layer_statistics(h: torch.Tensor) -> torch.Tensor:
    """[L', T, D] float32 → [L' * 2D]: per layer, mean ‖ std over the frames (differentiable)."""
    mean = h.mean(1)
    std = ((h - mean[:, None]).square().mean(1) + 1e-5).sqrt()
    return torch.cat([mean, std], dim=-1).flatten()


class StatsBranch(nn.Module):
    """Per-layer mean+std over frames → standardised (running statistics, like a StandardScaler) →
    dropout → 8 logits. It sees every layer separately, which the softmax layer mix cannot."""

    def __init__(self, num_layers: int, hidden_size: int, cfg: ModelConfig):
        super().__init__()
        self.layers = list(cfg.stats_layers) if cfg.stats_layers is not None else list(range(num_layers))
        dim = len(self.layers) * 2 * hidden_size
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.linear = nn.Linear(dim, NUM_EMOTIONS)

    def features(self, clips: Sequence[torch.Tensor]) -> torch.Tensor:
        """[B, L' * 2D] per-layer mean ‖ std over each clip's frames (before standardisation). One clip at a
        time: its float32 copy stays in cache (~6x faster than a padded batch of 64)."""
        return torch.stack([layer_statistics(clip[self.layers].float()) for clip in clips])

    def forward(self, clips: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.linear(self.dropout(self.norm(self.features(clips))))

    @torch.no_grad()
    def set_logistic_regression(self, mean: "np.ndarray", var: "np.ndarray", coef: "np.ndarray", intercept: "np.ndarray") -> None:
        """Install a fitted StandardScaler + LogisticRegression: the branch then computes its logits exactly."""
        self.norm.running_mean.copy_(torch.as_tensor(mean))
        self.norm.running_var.copy_(torch.as_tensor(var) - self.norm.eps)
        self.linear.weight.copy_(torch.as_tensor(coef))
        self.linear.bias.copy_(torch.as_tensor(intercept))


class HybridEmotionCNN(nn.Module):
    """Frozen-encoder features + log-mel → 8 emotion logits (~50K trainable parameters)."""

    def __init__(self, num_layers: int, hidden_size: int, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        if not (cfg.use_frames_branch or cfg.use_mel_branch or cfg.use_stats_branch):
            raise ValueError("at least one of use_frames_branch / use_mel_branch / use_stats_branch must be on")
        self.cfg = cfg
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.frames = FramesBranch(num_layers, hidden_size, cfg) if cfg.use_frames_branch else None
        self.mel = MelBranch(cfg) if cfg.use_mel_branch else None
        fused = (self.frames.out_dim if self.frames else 0) + (self.mel.out_dim if self.mel else 0)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(fused, NUM_EMOTIONS)) if fused else None
        self.stats = StatsBranch(num_layers, hidden_size, cfg) if cfg.use_stats_branch else None
        #: Off while the CNN branches train when the stats branch is fit in closed form (stats_fit="lr", "corpus_lr").
        self.stats_enabled = True

    def forward(
        self, hidden: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor, mel: torch.Tensor, mel_lengths: torch.Tensor
    ) -> torch.Tensor:
        """hidden: the encoder frames, per clip [L, T_i, D] or padded [B, L, T, D] (float16 as cached, or
        float32); lengths [B] (head frames); mel [B, F, Tm] (pooled log-mel), mel_lengths [B] → logits [B, 8]."""
        clips = [h[:, :n] for h, n in zip(hidden, lengths.tolist())]  # each clip at its own length
        mask = length_mask(lengths, int(lengths.max()))
        parts = []
        if self.frames is not None:
            parts.append(self.frames(clips, mask))
        if self.mel is not None:
            parts.append(self.mel(mel, mel_lengths))
        logits = self.classifier(torch.cat(parts, dim=-1)) if self.classifier is not None else 0.0
        if self.stats is None or not self.stats_enabled:
            return logits
        return logits + self.stats(clips)


def count_trainable_parameters(model: nn.Module) -> int:
    """Every parameter the head learns from data, including a stats branch fit in closed form."""
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":  # `python -m emotion_core.head.model` prints the parameter budget
    model = HybridEmotionCNN(num_layers=whisper.NUM_STATES, hidden_size=whisper.HIDDEN_SIZE)
    print(f"HybridEmotionCNN trainable parameters: {count_trainable_parameters(model):,} (mel bins: {N_MELS})")
