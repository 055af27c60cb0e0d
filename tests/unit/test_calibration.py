"""Temperature scaling on synthetic logits (the calibration of the cross-validation on real folds:
tests/integration/test_cv.py)."""

import numpy as np

from emotion_core.head import calibration


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 2000)
    logits = rng.normal(size=(2000, 8))
    logits[np.arange(2000), labels] += 1.5  # ~60 % accurate...
    logits *= 4.0  # ...but far too confident
    t = calibration.fit_temperature(logits, labels)
    assert t > 2.0
    before = calibration.ece(calibration.softmax(logits), labels)
    after = calibration.ece(calibration.softmax(logits, t), labels)
    assert after < before / 3 and after < 0.05
