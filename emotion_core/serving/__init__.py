"""Serving: the predictor and everything around it (windows, VAD, timeline, streaming, limits, schemas, the
BentoML service and its upload guard, OpenAPI, the MLflow pyfunc, the web demo). Imports the core and `head`,
never `research`."""
