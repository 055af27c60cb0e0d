"""Cache the frozen encoder's outputs for every clip of the config's manifest (resumable)."""

from emotion_core.research import steps
from pipelines._cli import config_from, parser, show

if __name__ == "__main__":
    show(steps.embed(config_from(parser(__doc__).parse_args())))
