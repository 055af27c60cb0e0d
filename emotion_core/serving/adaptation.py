"""Adaptation to a voice over HTTP: a request that names its speaker (`X-Speaker-Id: <the app's user id>`)
is answered with that speaker's running profile (`head.speaker.RunningProfile`) once it holds ADAPT_MIN_CLIPS
earlier recordings — by the head before that, and always by the head without the header (same file, same
answer). Voices differ more than emotions do, so this is the largest lever on voices the model never heard
(reports/default/crosscorpus.md, "Adapting to a voice").

    EMOTION_ADAPTATION          on (default) | off: `off` ignores the header
    EMOTION_ADAPT_MAX_SPEAKERS  profiles one worker keeps (default 500, ~57 KB each); the least recently
                                used is forgotten first

Profiles live in the worker's memory, one set per worker, and are scoped to the API key (with keys on), so a
client can neither read nor disturb another client's speakers. The answer says what it used in the
`X-Emotion-Adaptation` header: `off`, `learning; clips=3` or `adapted; clips=37`.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict

from emotion_core.head.speaker import ADAPT_MIN_CLIPS, RunningProfile

SPEAKER_HEADER = "x-speaker-id"
ADAPTATION_HEADER = "X-Emotion-Adaptation"
DEFAULT_MAX_SPEAKERS = 500
#: What a speaker id may be: an app's user id or a hash of it, never free text.
SPEAKER_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
#: The header as an OpenAPI parameter (the generated clients pass it in `options.headers`).
SPEAKER_PARAMETER = {"name": "X-Speaker-Id", "in": "header", "required": False,
                     "description": "The app's id for the speaker: answers adapt to that voice after "
                                    f"{ADAPT_MIN_CLIPS} recordings (header X-Emotion-Adaptation says which answered).",
                     "schema": {"type": "string", "pattern": f"^{SPEAKER_ID.pattern}$"}}


class SpeakerIdError(ValueError):
    """An `X-Speaker-Id` the service will not keep (→ 422)."""


class VoiceProfiles:
    """The running profiles of one worker, keyed by (client, speaker id), least recently used forgotten first."""

    def __init__(self, max_speakers: int = DEFAULT_MAX_SPEAKERS, enabled: bool = True):
        self.max_speakers, self.enabled = max_speakers, enabled
        self._profiles: OrderedDict[tuple[str, str], RunningProfile] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "VoiceProfiles":
        mode = os.environ.get("EMOTION_ADAPTATION", "on").strip().lower()
        if mode not in {"on", "off"}:
            raise ValueError(f"EMOTION_ADAPTATION={mode!r}: expected on or off")
        raw = os.environ.get("EMOTION_ADAPT_MAX_SPEAKERS", "").strip()
        if raw and (not raw.isdigit() or int(raw) < 1):
            raise ValueError(f"EMOTION_ADAPT_MAX_SPEAKERS={raw!r}: expected a positive integer")
        return cls(int(raw) if raw else DEFAULT_MAX_SPEAKERS, enabled=mode == "on")

    def voice(self, client: str, speaker_id: str | None) -> RunningProfile | None:
        """The speaker's profile (created on first use), or None without a speaker id or with adaptation off.
        Raises SpeakerIdError for an id outside `SPEAKER_ID`."""
        if speaker_id is None or not self.enabled:
            return None
        if not SPEAKER_ID.fullmatch(speaker_id):
            raise SpeakerIdError("X-Speaker-Id must be 1-64 characters of letters, digits and . _ : @ -")
        key = (client, speaker_id)
        with self._lock:
            profile = self._profiles.pop(key, None) or RunningProfile()
            self._profiles[key] = profile
            while len(self._profiles) > self.max_speakers:
                self._profiles.popitem(last=False)
            return profile

    def __len__(self) -> int:
        return len(self._profiles)


def describe(voice: RunningProfile | None, before: int) -> str:
    """The `X-Emotion-Adaptation` value for an answer given with `before` earlier recordings of the voice."""
    if voice is None:
        return "off"
    return f"{'adapted' if before >= ADAPT_MIN_CLIPS else 'learning'}; clips={before}"
