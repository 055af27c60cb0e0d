"""Score a train run's model on the held-out actors; log metrics/figures and write reports/<config>/."""

from emotion_core.research import steps
from pipelines._cli import config_from, parser, show

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--run-id", help="train run to evaluate (default: the latest finished one of this config)")
    p.add_argument("--update-readme", action="store_true", help="rewrite the README's generated results section")
    args = p.parse_args()
    result = steps.evaluate(config_from(args), run_id=args.run_id)
    if args.update_readme:
        steps.update_readme(result)
    show(result)
