"""Whisper-base on ONNX Runtime: `export` builds the files once per machine, `runtime` serves them."""
