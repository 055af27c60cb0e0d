"""Encoder + head + calibration → `EmotionPrediction`. Knows nothing about HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from emotion_core.audio import AudioError, load_audio
from emotion_core.config import model_uri as default_model_uri
from emotion_core.encoders import load_encoder
from emotion_core.features import SAMPLE_RATE
from emotion_core.front_end import FrontEnd
from emotion_core.head.batching import collate, prepare
from emotion_core.head.clip_features import ClipFeatures, extract_features
from emotion_core.head.packaging import find_model_dir, load_model_dir
from emotion_core.head.speaker import (
    MIN_ENROLLMENT_CLIPS,
    RunningProfile,
    SpeakerProbe,
    SpeakerProfile,
    clip_statistics,
)
from emotion_core.labels import EMOTIONS, low_confidence_warning, music_mood
from emotion_core.serving.limits import MODEL_THREADS, Limits
from emotion_core.serving.schemas import EmotionPrediction
from emotion_core.serving.windows import WINDOW_SECONDS, plan_windows
from emotion_core.vad import Segment, speech_segments

#: Shorter audio carries too little speech to judge; rejected with a clear AudioError.
MIN_SECONDS = 0.3

AudioSource = str | Path | bytes | BinaryIO | np.ndarray


class NoSpeechError(AudioError):
    """Decodable audio without any voice activity: there is no emotion to report."""

    def __init__(self, duration: float) -> None:
        super().__init__(f"no speech detected in {duration:.1f} s of audio")
        self.duration = duration


def resolve_model_uri(uri: str) -> tuple[str, str | None]:
    """MLflow model URI → (local directory, registry version). Where MLflow isn't imported yet (the serving
    worker) a short child process asks the store, so the registry stack (~100 MB of RSS: mlflow, sqlalchemy,
    alembic, pandas) never loads into the process that serves."""
    if "mlflow" in sys.modules:
        from emotion_core.registry import resolve_model  # mlflow is already loaded in this process

        return resolve_model(uri)
    proc = subprocess.run([sys.executable, "-m", "emotion_core.registry", uri], capture_output=True, text=True)
    if proc.returncode == 2:
        raise LookupError(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"resolving {uri} failed:\n{proc.stderr[-2000:]}")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer["dir"], answer["version"]


class Predictor:
    def __init__(self, model: torch.nn.Module, meta: Any, source: str = "", version: str | None = None,
                 speaker_probe: SpeakerProbe | None = None):
        self.model, self.meta, self.source, self.version = model.eval(), meta, source, version
        self.speaker_probe = speaker_probe  # optional per-user calibration (emotion_core/head/speaker.py)
        self.encoder = load_encoder(meta.encoder, num_layers=meta.num_layers)  # $EMOTION_RUNTIME: onnx (default) | torch
        self.front_end = FrontEnd(**meta.front_end)  # what the head was trained behind
        if self.encoder.fingerprint != meta.encoder_fingerprint:
            raise ValueError(
                f"model {source} was trained on encoder weights {meta.encoder_fingerprint[:12]}, "
                f"but {meta.encoder} here has {self.encoder.fingerprint[:12]}"
            )
        if self.encoder.runtime.startswith("onnx"):
            # only when the encoder runs in ONNX Runtime
            from emotion_core.encoders.onnx.runtime import use_serving_torch_threads

            use_serving_torch_threads()
        self.loaded_at = time.time()
        self.limits = Limits.from_env()
        self.model_slots = threading.BoundedSemaphore(MODEL_THREADS)  # one gate for HTTP routes and streams

    @classmethod
    def from_dir(cls, directory: str | Path, source: str | None = None, version: str | None = None) -> "Predictor":
        model, meta = load_model_dir(Path(directory))
        return cls(model, meta, source=source or str(directory), version=version,
                   speaker_probe=SpeakerProbe.load(find_model_dir(Path(directory))))

    @classmethod
    def from_uri(cls, uri: str | Path | None = None) -> "Predictor":
        """`models:/emotion-cnn@champion` (default), `runs:/<id>/model`, `models:/<id>` or a local directory."""
        uri = str(uri or default_model_uri())
        if Path(uri).exists():
            return cls.from_dir(uri)
        local, version = resolve_model_uri(uri)
        return cls.from_dir(local, source=uri, version=version)

    def features(self, audio: np.ndarray) -> ClipFeatures:
        return extract_features(self.encoder, audio, self.front_end)

    def _window_features(self, audio: np.ndarray) -> ClipFeatures:
        feats = self.features(audio)
        # The head was trained on float16-cached features: round the same way so a served prediction
        # equals the evaluated one for the same file.
        return ClipFeatures(hidden=feats.hidden.half(), mel=feats.mel.half())

    def _window_logits(self, audio: np.ndarray, speaker: SpeakerProfile | None = None,
                       want_stats: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """One window's logits (the head's, or with `speaker` the probe's), and its `clip_statistics` when
        `want_stats` or the probe needs them (computed once; the features themselves are not kept)."""
        with self.model_slots:
            feats = self._window_features(audio)
            stats = clip_statistics(feats) if want_stats or speaker is not None else None
            if speaker is not None:
                return self.speaker_probe.logits(stats, speaker), stats
            with torch.inference_mode():
                return collate(prepare(self.model, [feats])).logits(self.model)[0].numpy(), stats

    def _voiced(self, audio: np.ndarray, segments: list[Segment] | None = None) -> list[Segment]:
        if len(audio) < MIN_SECONDS * SAMPLE_RATE:
            raise AudioError(f"audio too short: {len(audio) / SAMPLE_RATE:.2f} s < {MIN_SECONDS} s")
        segments = speech_segments(audio) if segments is None else segments
        if not segments:
            raise NoSpeechError(len(audio) / SAMPLE_RATE)
        return segments

    def probabilities(self, audio: np.ndarray, segments: list[Segment] | None = None,
                      speaker: SpeakerProfile | None = None, voice: RunningProfile | None = None) -> np.ndarray:
        """Calibrated probabilities [8] for 16 kHz mono audio: the logits of the windows `windows.plan_windows`
        picks (the whole clip up to 6 s; else 4 s windows every 2 s over the voice), averaged, then / temperature.
        Raises NoSpeechError when the VAD finds no speech (`segments`: its answer, if already known).
        With `speaker` (a profile from `enroll`), the speaker-normalised probe answers instead of the head.
        With `voice` (a running profile of the same speaker), the probe answers with its profile once it holds
        ADAPT_MIN_CLIPS earlier recordings (the head before), and this recording's windows join it afterwards."""
        segments = self._voiced(audio, segments)
        if voice is not None:
            if self.speaker_probe is None:
                raise ValueError(f"model {self.source} has no speaker probe: adaptation to a voice is unavailable")
            speaker = voice.profile()
        self._check_speaker(speaker)
        windows = plan_windows(len(audio), segments, max_windows=self.limits.max_windows)
        answers = [self._window_logits(audio[a:b], speaker, want_stats=voice is not None) for a, b in windows]
        if voice is not None:
            for _, stats in answers:
                voice.add(stats)
        logits = np.mean([logit for logit, _ in answers], axis=0)
        z = logits / (self.meta.temperature if speaker is None else self.speaker_probe.temperature)
        p = np.exp(z - z.max())
        return p / p.sum()

    def enroll(self, sources: list[AudioSource], sample_rate: int | None = None) -> SpeakerProfile:
        """A user's profile for per-user calibration, from their own recordings (any emotion; the labels are
        never needed). Each recording counts once (the whole clip up to 6 s, else one voiced 4 s window). Raises ValueError if the model has
        no speaker probe or fewer than MIN_ENROLLMENT_CLIPS recordings hold speech; AudioError for a bad file."""
        if self.speaker_probe is None:
            raise ValueError(f"model {self.source} has no speaker probe (retrain it with this version to get one)")
        stats = []
        for source in sources:
            audio = load_audio(source, sample_rate=sample_rate, max_seconds=self.limits.max_audio_seconds)
            try:
                segments = self._voiced(audio)
            except NoSpeechError:
                continue  # silence says nothing about the voice
            a, b = plan_windows(len(audio), segments, max_windows=1)[0]
            stats.append(clip_statistics(self._window_features(audio[a:b])))
        if len(stats) < MIN_ENROLLMENT_CLIPS:
            raise ValueError(f"enrollment needs at least {MIN_ENROLLMENT_CLIPS} recordings with speech, got {len(stats)}"
                             " (10 or more are better)")
        return SpeakerProfile.from_statistics(np.stack(stats))

    def _check_speaker(self, speaker: SpeakerProfile | None) -> None:
        if speaker is None:
            return
        if self.speaker_probe is None:
            raise ValueError(f"model {self.source} has no speaker probe: per-user calibration is unavailable")
        if speaker.mean.shape != self.speaker_probe.scale_mean.shape:
            raise ValueError("this speaker profile was made with another encoder")

    def predict(self, source: AudioSource, sample_rate: int | None = None,
                speaker: SpeakerProfile | None = None, voice: RunningProfile | None = None) -> EmotionPrediction:
        """Emotion of a whole recording. Raises AudioError (too short/long, undecodable) or NoSpeechError.
        `speaker`: optional per-user calibration (`enroll`); `voice`: or a running profile that learns it."""
        audio = load_audio(source, sample_rate=sample_rate, max_seconds=self.limits.max_audio_seconds)
        return self.prediction(self.probabilities(audio, speaker=speaker, voice=voice))

    def predict_realtime(self, source: AudioSource, sample_rate: int | None = None,
                         speaker: SpeakerProfile | None = None, voice: RunningProfile | None = None) -> EmotionPrediction:
        """Emotion of a microphone buffer (0.5–3 s is the sweet spot): one pass over its most recent 4 s
        (what the app shows is "now"), no sliding windows, so latency stays flat whatever is sent."""
        audio = load_audio(source, sample_rate=sample_rate, max_seconds=self.limits.max_audio_seconds)
        return self.prediction(self.probabilities(audio[-int(WINDOW_SECONDS * SAMPLE_RATE) :], speaker=speaker,
                                                  voice=voice))

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
        described = self.encoder.describe()
        return {"model_uri": self.source, "model_version": self.version, "encoder": self.meta.encoder,
                "temperature": self.meta.temperature, "speaker_calibration": self.speaker_probe is not None,
                "runtime": described.get("runtime"), "int8_variant": described.get("int8_variant"),
                "model_verified": self.meta.verified}

