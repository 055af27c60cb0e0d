"""(a) The baseline, "the Hugging Face way": transformers' WhisperFeatureExtractor pads every clip to 30 s, the
fp32 WhisperEncoder runs its own forward over all 1500 positions (our converted weights), then our head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from emotion_core.audio import load_audio


class HFWay:
    """What a user following the transformers docs runs: pad to 30 s, full forward, then our head."""

    def __init__(self, predictor) -> None:
        self.extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)
        self.encoder = predictor.encoder.model  # the converted fp32 transformers WhisperEncoder
        self.head, self.temperature = predictor.model, predictor.meta.temperature

    def predict(self, path: Path) -> np.ndarray:
        audio = load_audio(path)
        mel = self.extractor(audio, sampling_rate=16000, return_tensors="pt").input_features  # [1, 80, 3000]
        with torch.inference_mode():
            hidden = torch.stack(self.encoder(mel, output_hidden_states=True).hidden_states, dim=1)  # [1, 7, 1500, 512]
            logits = self.head(hidden, torch.tensor([hidden.shape[2]]), mel, torch.tensor([mel.shape[2]]))[0]
        return torch.softmax(logits / self.temperature, -1).numpy()
