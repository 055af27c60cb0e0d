"""Encoder + head + calibration → `EmotionPrediction`. Knows nothing about HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from emotion_core.audio import AudioError, load_audio
from emotion_core.config import model_uri as default_model_uri
from emotion_core.config import tracking_uri
from emotion_core.embeddings import ClipFeatures, extract_features
from emotion_core.encoders import load_encoder
from emotion_core.features import SAMPLE_RATE
from emotion_core.labels import EMOTIONS, low_confidence_warning, music_mood
from emotion_core.limits import Limits
from emotion_core.packaging import load_model_dir
from emotion_core.schemas import EmotionPrediction
from emotion_core.training import collate, prepare
from emotion_core.vad import Segment, speech_segments
from emotion_core.windows import WINDOW_SECONDS, plan_windows

#: Shorter audio carries too little speech to judge; rejected with a clear AudioError.
MIN_SECONDS = 0.3

AudioSource = str | Path | bytes | BinaryIO | np.ndarray


class NoSpeechError(AudioError):
    """Decodable audio without any voice activity: there is no emotion to report."""

    def __init__(self, duration: float) -> None:
        super().__init__(f"no speech detected in {duration:.1f} s of audio")
        self.duration = duration


class Predictor:
    def __init__(self, model: torch.nn.Module, meta: Any, source: str = "", version: str | None = None):
        self.model, self.meta, self.source, self.version = model.eval(), meta, source, version
        self.encoder = load_encoder(meta.encoder, num_layers=meta.num_layers)  # $EMOTION_RUNTIME: onnx (default) | torch
        if self.encoder.fingerprint != meta.encoder_fingerprint:
            raise ValueError(
                f"model {source} was trained on encoder weights {meta.encoder_fingerprint[:12]}, "
                f"but {meta.encoder} here has {self.encoder.fingerprint[:12]}"
            )
        self.loaded_at = time.time()
        self.limits = Limits.from_env()

    @classmethod
    def from_dir(cls, directory: str | Path, source: str | None = None, version: str | None = None) -> "Predictor":
        model, meta = load_model_dir(Path(directory))
        return cls(model, meta, source=source or str(directory), version=version)

    @classmethod
    def from_uri(cls, uri: str | Path | None = None) -> "Predictor":
        """`models:/emotion-cnn@champion` (default), `runs:/<id>/model`, `models:/<id>` or a local directory."""
        uri = str(uri or default_model_uri())
        if Path(uri).exists():
            return cls.from_dir(uri)
        import mlflow

        mlflow.set_tracking_uri(tracking_uri())  # $MLFLOW_TRACKING_URI or the repo's sqlite store
        mlflow.set_registry_uri(tracking_uri())
        version = None
        if uri.startswith("models:/") and "@" in uri:
            from mlflow.tracking import MlflowClient

            name, alias = uri.removeprefix("models:/").split("@", 1)
            try:
                version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
            except Exception as exc:  # registry empty or alias missing: say what to run
                raise LookupError(
                    f"no model at {uri} in the MLflow store {mlflow.get_tracking_uri()}: "
                    "train and register one first (`make all`, or `make train evaluate register`; see README)"
                ) from exc
        local = mlflow.artifacts.download_artifacts(uri)
        return cls.from_dir(local, source=uri, version=version)

    def features(self, audio: np.ndarray) -> ClipFeatures:
        return extract_features(self.encoder, audio)

    def _window_logits(self, audio: np.ndarray) -> np.ndarray:
        feats = self.features(audio)
        # The head was trained on float16-cached features: round the same way so a served prediction
        # equals the evaluated one for the same file.
        feats = ClipFeatures(hidden=feats.hidden.half(), mel=feats.mel.half())
        with torch.inference_mode():
            return collate(prepare(self.model, [feats])).logits(self.model)[0].numpy()

    def probabilities(self, audio: np.ndarray, segments: list[Segment] | None = None) -> np.ndarray:
        """Calibrated probabilities [8] for 16 kHz mono audio: the logits of the windows `windows.plan_windows`
        picks (the whole clip up to 6 s; else voiced 4 s windows every 2 s), averaged, then / temperature.
        Raises NoSpeechError when the VAD finds no speech (`segments`: its answer, if already known)."""
        if len(audio) < MIN_SECONDS * SAMPLE_RATE:
            raise AudioError(f"audio too short: {len(audio) / SAMPLE_RATE:.2f} s < {MIN_SECONDS} s")
        segments = speech_segments(audio) if segments is None else segments
        if not segments:
            raise NoSpeechError(len(audio) / SAMPLE_RATE)
        windows = plan_windows(len(audio), segments, max_windows=self.limits.max_windows)
        logits = np.mean([self._window_logits(audio[a:b]) for a, b in windows], axis=0)
        z = logits / self.meta.temperature
        p = np.exp(z - z.max())
        return p / p.sum()

    def predict(self, source: AudioSource, sample_rate: int | None = None) -> EmotionPrediction:
        """Emotion of a whole recording. Raises AudioError (too short/long, undecodable) or NoSpeechError."""
        audio = load_audio(source, sample_rate=sample_rate, max_seconds=self.limits.max_audio_seconds)
        return self.prediction(self.probabilities(audio))

    def predict_realtime(self, source: AudioSource, sample_rate: int | None = None) -> EmotionPrediction:
        """Emotion of a microphone buffer (0.5–3 s is the sweet spot): one pass over its most recent 4 s
        (what the app shows is "now"), no sliding windows, so latency stays flat whatever is sent."""
        audio = load_audio(source, sample_rate=sample_rate, max_seconds=self.limits.max_audio_seconds)
        return self.prediction(self.probabilities(audio[-int(WINDOW_SECONDS * SAMPLE_RATE) :]))

    @staticmethod
    def prediction(probs: np.ndarray) -> EmotionPrediction:
        best = int(np.argmax(probs))
        confidence = float(probs[best])
        emotion = EMOTIONS[best]
        return EmotionPrediction(
            emotion=emotion,
            confidence=confidence,
            music_mood=music_mood(emotion),
            all_probabilities={e: float(p) for e, p in zip(EMOTIONS, probs)},
            warning=low_confidence_warning(confidence),
        )

    def info(self) -> dict[str, Any]:
        return {"model_uri": self.source, "model_version": self.version, "encoder": self.meta.encoder,
                "temperature": self.meta.temperature}

