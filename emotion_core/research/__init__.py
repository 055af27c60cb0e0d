"""Research: the embedding cache, training, the probe, cross-validation, metrics, tracking, reports, the pipeline
steps and tuning. May import anything below it; serving never imports it."""
