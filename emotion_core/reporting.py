"""Keep the README's numbers generated: pipelines rewrite the text between
`<!-- BEGIN generated:NAME -->` and `<!-- END generated:NAME -->` markers."""

from __future__ import annotations

import re
from pathlib import Path

from emotion_core.config import PROJECT_ROOT


def update_generated_section(name: str, text: str, path: Path = PROJECT_ROOT / "README.md") -> bool:
    """Replace the body of the named section; returns False (and changes nothing) if the markers are absent."""
    if not path.exists():
        return False
    begin, end = f"<!-- BEGIN generated:{name} -->", f"<!-- END generated:{name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    content = path.read_text()
    if not pattern.search(content):
        return False
    path.write_text(pattern.sub(lambda _: f"{begin}\n{text.strip()}\n{end}", content))
    return True
