"""The one source of truth for emotion labels, music moods and the confidence threshold.

Everything else (schemas, service, reports, generated TypeScript) derives from these constants.
This module must stay import-light: no numpy, no torch.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, Mapping

#: The 8 emotions in the order the mobile app (the seed) uses; also the model's logit order.
#: It equals RAVDESS's emotion codes 01..08.
EMOTIONS: Final[tuple[str, ...]] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

#: Emotion → music mood the app plays. neutral/calm/happy come from the seed; the other five
#: follow one rule: match the listener's arousal, nudge valence up.
MUSIC_MOODS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "neutral": "chill",
        "calm": "relaxing",
        "happy": "upbeat",
        "sad": "comforting",  # warm, gentle songs that acknowledge the mood rather than fight it
        "angry": "energetic",  # high-tempo music to release energy, not to escalate it with lyrics
        "fearful": "soothing",  # slow, steady, predictable rhythms lower arousal
        "disgust": "uplifting",  # bright, positive songs shift attention away
        "surprised": "exciting",  # lively music that matches the heightened arousal
    }
)

#: Below this (calibrated) confidence a prediction carries a warning.
CONFIDENCE_THRESHOLD: Final[float] = 0.70

NUM_EMOTIONS: Final[int] = len(EMOTIONS)
EMOTION_TO_INDEX: Final[Mapping[str, int]] = MappingProxyType({e: i for i, e in enumerate(EMOTIONS)})

#: RAVDESS file names encode the emotion as a 2-digit code, 01 = neutral … 08 = surprised.
RAVDESS_EMOTION_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {f"{i + 1:02d}": e for i, e in enumerate(EMOTIONS)}
)

assert set(MUSIC_MOODS) == set(EMOTIONS), "every emotion needs a music mood"


def music_mood(emotion: str) -> str:
    """The music mood for an emotion label; KeyError names the valid labels."""
    try:
        return MUSIC_MOODS[emotion]
    except KeyError:
        raise KeyError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}") from None


def low_confidence_warning(confidence: float) -> str | None:
    """The warning text attached to predictions below the threshold, else None."""
    if confidence < CONFIDENCE_THRESHOLD:
        return (
            f"Low confidence ({confidence:.2f} < {CONFIDENCE_THRESHOLD:.2f}): "
            "the emotion may be wrong; consider a longer or clearer recording."
        )
    return None
