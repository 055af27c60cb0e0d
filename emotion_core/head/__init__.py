"""The head on the frozen encoder: clip features, batching, the model, calibration, speaker profiles, packaging.
Shared by serving and research; imports the core only."""
