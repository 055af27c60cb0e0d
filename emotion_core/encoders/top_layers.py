"""Whisper's top transformer layers, re-run from a lower layer's cached output and made trainable — in full or
through LoRA adapters. Adapting the encoder this way never recomputes the convolutions or the layers below:
the embedding cache already holds every layer's output.

`TopLayers(encoder, n)` copies the last `n` layers (and the final layer norm) of a converted Whisper encoder.
Fed state `L - n` (the output of the layer below them), it returns states `L - n + 1 .. L`, equal to the
frozen encoder's until training moves them (LoRA's B starts at zero). `merged()` folds LoRA back into plain
linear layers: the served encoder is then Whisper with new weights in those layers, nothing more.
"""

from __future__ import annotations

import copy
import math
from typing import Literal, Sequence

import torch
from torch import nn

#: Linear layers of a Whisper encoder layer LoRA may adapt (attention projections and the feed-forward pair).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class LoRALinear(nn.Module):
    """`base(x) + (alpha / rank) · x Aᵀ Bᵀ` with `base` frozen; B starts at zero, so at first it is `base`."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        self.a = nn.Parameter(torch.empty(rank, base.in_features))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))  # as peft initialises lora_A
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

    def merged(self) -> nn.Linear:
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            out.weight += self.scale * (self.b @ self.a)
        return out


def _owner(layer: nn.Module, target: str) -> nn.Module:
    return layer.self_attn if target.endswith("_proj") else layer


class TopLayers(nn.Module):
    """The last `n` layers of a Whisper encoder (+ its final layer norm), trainable (`mode`)."""

    def __init__(self, encoder: nn.Module, n: int, mode: Literal["lora", "full"] = "lora", rank: int = 8,
                 alpha: float = 16.0, targets: Sequence[str] = ("q_proj", "v_proj", "fc1", "fc2")):
        super().__init__()
        total = len(encoder.layers)
        if not 1 <= n <= total:
            raise ValueError(f"the encoder has {total} layers; cannot adapt the top {n}")
        if unknown := sorted(set(targets) - set(LORA_TARGETS)):
            raise ValueError(f"LoRA targets {unknown}: known ones are {list(LORA_TARGETS)}")
        self.first_state = total - n  # the cached state they read
        self.layers = copy.deepcopy(encoder.layers[total - n:])
        self.layer_norm = copy.deepcopy(encoder.layer_norm)
        self.mode = mode
        if mode == "full":
            self.requires_grad_(True)
        elif mode == "lora":
            self.requires_grad_(False)
            for layer in self.layers:
                for target in targets:
                    owner = _owner(layer, target)
                    setattr(owner, target, LoRALinear(getattr(owner, target), rank, alpha))
        else:
            raise ValueError(f"mode must be 'lora' or 'full', got {mode!r}")

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """state [T, D] (or [B, T, D] of equal-length clips) → the states above it [n, T, D] ([n, B, T, D]): the
        last after the final layer norm, as the encoder returns it. One clip per call keeps its own length
        (Whisper attends over every frame; padding would change what a clip sees)."""
        x = state.float()[None] if state.ndim == 2 else state.float()
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x, None)
            out.append(self.layer_norm(x) if i == len(self.layers) - 1 else x)
        states = torch.stack(out)
        return states[:, 0] if state.ndim == 2 else states

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def merged(self) -> "TopLayers":
        """A copy with every LoRA adapter folded into its linear layer (plain Whisper layers, frozen)."""
        out = copy.deepcopy(self)
        for layer in out.layers:
            for target in LORA_TARGETS:
                owner = _owner(layer, target)
                if isinstance(getattr(owner, target), LoRALinear):
                    setattr(owner, target, getattr(owner, target).merged())
        return out.requires_grad_(False).eval()
