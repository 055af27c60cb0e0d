"""The MLflow pyfunc flavour of an emotion model, logged as "models from code" (no pickles):

    mlflow.pyfunc.load_model("models:/emotion-cnn@champion").predict(pd.DataFrame({"path": [...]}))

returns one row per file: emotion, confidence, music_mood and the 8 calibrated probabilities.
"""

from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd

from emotion_core.serving.predictor import Predictor


class EmotionPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):

        self.predictor = Predictor.from_dir(Path(context.artifacts["model_dir"]))

    def predict(self, context, model_input, params=None):  # untyped: MLflow would read hints as a schema

        rows = []
        for path in model_input["path"]:
            p = self.predictor.predict(path)
            rows.append({"emotion": p.emotion, "confidence": p.confidence, "music_mood": p.music_mood,
                         **p.all_probabilities.model_dump()})
        return pd.DataFrame(rows)


mlflow.models.set_model(EmotionPyfunc())
