"""Register the best evaluated train run of a config as emotion-cnn@champion."""

from emotion_core.research import steps
from pipelines._cli import config_from, parser, show

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--metric", default=None, help="run metric to rank fold-config runs by (default: test_ua)")
    args = p.parse_args()
    show(steps.register(config_from(args), args.metric))
