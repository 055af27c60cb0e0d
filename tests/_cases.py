"""Request cases shared by the unit tier (the upload guard as ASGI) and the integration tier (the real server)."""

#: Raw PCM bodies the upload guard must refuse with a 422: (body, Content-Type, words the detail contains).
BAD_PCM = [
    (b"\x00" * 3, "audio/pcm", "whole frames"),
    (b"\x00" * 100, "audio/pcm; rate=abc", "invalid literal"),
    (b"\x00" * 100, "audio/pcm; rate=5", "sample rate"),
    (b"\x00" * 100, "audio/pcm; channels=99", "channels"),
    (b"", "audio/pcm", "empty"),
]
