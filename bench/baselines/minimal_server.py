"""Baselines for bench/load.py: what users write by hand, one model per process, no batching.

  --mode minimal  FastAPI + a tf.function with an input signature (what a careful user writes)
  --mode naive    FastAPI + model.predict (what most tutorials show)
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402


class Request(BaseModel):
    instances: list[list[float]]


def build(path: str, mode: str) -> FastAPI:
    model = keras.saving.load_model(path, compile=False)
    width = model.inputs[0].shape[1]
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec([None, width], tf.float32)])
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(request: Request) -> dict:
        x = np.asarray(request.instances, dtype=np.float32)
        y = model.predict(x, verbose=0) if mode == "naive" else fn(x).numpy()
        return {"predictions": y.tolist()}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["minimal", "naive"], default="minimal")
    args = parser.parse_args()
    uvicorn.run(build(args.model, args.mode), host="127.0.0.1", port=args.port, log_level="warning")
