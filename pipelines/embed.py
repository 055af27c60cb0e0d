"""Cache the frozen encoder's outputs for every clip of the config's manifest (resumable). `--shard i/n`: only
the i-th of n disjoint shares, so several hosts writing one cache dir split a large corpus."""

from emotion_core.research import steps
from pipelines._cli import config_from, parser, show

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--shard", default=None, metavar="I/N", help="embed only the i-th of n shares (e.g. 2/4)")
    args = p.parse_args()
    show(steps.embed(config_from(args), shard=args.shard))
