"""Train the head on cached features from an experiments/*.yaml config; log the run and model to MLflow."""

from emotion_core.research import steps
from pipelines._cli import config_from, parser, show

if __name__ == "__main__":
    show(steps.train(config_from(parser(__doc__).parse_args())))
