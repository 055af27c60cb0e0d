"""emotion_core: speech emotion recognition with a frozen speech encoder and a small CNN head."""

from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS

__all__ = ["EMOTIONS", "MUSIC_MOODS", "CONFIDENCE_THRESHOLD"]
__version__ = "0.1.0"
