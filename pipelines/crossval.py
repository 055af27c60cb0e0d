"""6-fold actor-held-out cross-validation of a config: the head and the linear probe on the same folds,
calibration, the speaker-dependent random split and speaker-adapted rows → reports/<config>/cv.md."""

from emotion_core.research import steps
from pipelines._cli import config_from, parser

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--update-readme", action="store_true", help="rewrite the README's generated results section")
    args = p.parse_args()
    report = steps.crossval(config_from(args))
    if args.update_readme:
        steps.update_readme_cv(report)
    head, probe = report["head"], report["probe"]
    print(f"head UA {head['ua_mean']:.1%} ± {head['ua_std']:.1%} | probe UA {probe['ua_mean']:.1%} ± {probe['ua_std']:.1%} "
          f"| ECE {report['calibration']['ece_before']:.3f} → {report['calibration']['ece_after']:.3f} "
          f"| {report['seconds'] / 60:.1f} min → reports/{report['config']}/cv.md")
