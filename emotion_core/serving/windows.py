"""Which stretches of a recording one prediction pools over.

The head was trained on crops of at most 4 s of whole clips (RAVDESS clips are 3–5 s). A clip up to
`SINGLE_PASS_SECONDS` is one pass on the whole clip, exactly as evaluated. In longer audio the windows are
laid over the voice, from its first voiced sample to its last: 4 s windows every 2 s, or one window centred
on it when the voice is shorter than a window. Silence before or after the voice therefore cannot move the
windows (nor add a half-silent one). Windows with less than `MIN_SPEECH_SECONDS` of voice activity (in a
long pause) are skipped, as silence and noise would only dilute the answer, and the predictor averages the
logits of the rest. At most `max_windows` are kept, evenly spread, so the work per request is bounded.
"""

from __future__ import annotations

import numpy as np

from emotion_core.config import CROP_SECONDS
from emotion_core.features import SAMPLE_RATE
from emotion_core.vad import Segment, speech_seconds

WINDOW_SECONDS = CROP_SECONDS
HOP_SECONDS = 2.0  # half a window: every stretch of speech is seen whole by some window
SINGLE_PASS_SECONDS = WINDOW_SECONDS + HOP_SECONDS
MIN_SPEECH_SECONDS = 1.0  # a quarter of a window


def centred_start(start: int, end: int, size: int, num_samples: int) -> int:
    """Where a `size`-sample stretch centred on samples [start, end) begins, kept inside the recording."""
    return max(0, min(start - (size - (end - start)) // 2, num_samples - size))


def plan_windows(num_samples: int, segments: list[Segment], max_windows: int = 48,
                 window: float = WINDOW_SECONDS, hop: float = HOP_SECONDS) -> list[tuple[int, int]]:
    """[(start, end)] sample ranges to predict on; never empty for num_samples > 0."""
    if num_samples <= SINGLE_PASS_SECONDS * SAMPLE_RATE:
        return [(0, num_samples)]
    size, step = int(window * SAMPLE_RATE), int(hop * SAMPLE_RATE)
    first = min(int(min(seg.start for seg in segments) * SAMPLE_RATE), num_samples) if segments else 0
    last = min(int(max(seg.end for seg in segments) * SAMPLE_RATE), num_samples) if segments else num_samples
    if last - first <= size:  # one window, centred on the voice
        starts = [centred_start(first, last, size, num_samples)]
    else:
        starts = list(range(first, last - size + 1, step))
        if starts[-1] + size < last:
            starts.append(last - size)  # the voice's tail gets a window of its own
    speech = np.array([speech_seconds(segments, s / SAMPLE_RATE, (s + size) / SAMPLE_RATE) for s in starts])
    keep = np.flatnonzero(speech >= min(MIN_SPEECH_SECONDS, speech.max()))  # at least the most voiced one
    if speech.max() == 0:
        keep = np.arange(len(starts))  # no VAD information: pool everything
    if len(keep) > max_windows:
        keep = keep[np.linspace(0, len(keep) - 1, max_windows).round().astype(int)]
    return [(starts[i], starts[i] + size) for i in keep]
