"""Measurements of the served model: latency in-process and over HTTP, resources, the load test, the report.
`server` is the one helper that starts and stops a real `bentoml serve` (tests, load test, benchmark)."""
