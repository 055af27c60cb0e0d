"""Recording conditions RAVDESS never shows: the 6-fold CV heads score their test actors' clips degraded
(noise, telephone band, Opus 12 kbit/s, reverb, -20 dB) → reports/<config>/robustness.{json,md}. With
--augment, the same recipe trained on degraded copies is scored beside it."""

from emotion_core.config import load_config
from emotion_core.degrade import CONDITIONS
from emotion_core.research import robustness
from pipelines._cli import config_from, parser

if __name__ == "__main__":
    cli = parser(__doc__)
    cli.add_argument("--conditions", nargs="*", choices=sorted(CONDITIONS), help="default: all")
    cli.add_argument("--every", type=int, default=1, help="score every n-th test clip (a quicker look)")
    cli.add_argument("--augment", nargs="+", choices=sorted(CONDITIONS), default=None,
                     help="also score the recipe trained on these degraded copies (train.augment), same run")
    args = cli.parse_args()
    candidates = {}
    if args.augment:
        name = f"+ copies: {', '.join(args.augment)}"
        candidates[name] = load_config(args.config, [*args.overrides, f"train.augment=[{', '.join(args.augment)}]"])
    report = robustness.run(config_from(args), conditions=args.conditions, every=args.every, candidates=candidates)
    print(robustness.markdown(report))
