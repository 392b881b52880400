"""MLflow "model from code" for the benchmark: an ONNX text classifier as a pyfunc.

Saved by bench/mlflow_pyfunc.py with `mlflow.pyfunc.save_model(python_model=<this file>,
artifacts={"onnx_model": ..., "tokenizer": ...}, model_config={"labels": [...], ...})`; served
by `mlflow models serve`. This is what a team without hotserve would write: tokenize with
`tokenizers`, run `onnxruntime`, softmax, one output row (label, score) per input text.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class OnnxTextClassifier(PythonModel):
    def load_context(self, context):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        config = context.model_config or {}
        self.session = ort.InferenceSession(context.artifacts["onnx_model"], providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        max_len = config.get("max_sequence_length")
        if max_len and self.tokenizer.truncation is None:
            self.tokenizer.enable_truncation(int(max_len))
        if self.tokenizer.padding is None:
            self.tokenizer.enable_padding()
        self.inputs = {i.name: _INT_TYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "logits" if "logits" in outputs else outputs[0]
        self.labels = list(config.get("labels") or [])

    @staticmethod
    def _texts(model_input) -> list[str]:
        if isinstance(model_input, pd.DataFrame):
            col = "text" if "text" in model_input.columns else model_input.columns[0]
            return [str(t) for t in model_input[col].tolist()]
        if isinstance(model_input, pd.Series):
            return [str(t) for t in model_input.tolist()]
        if isinstance(model_input, np.ndarray):
            return [str(t) for t in model_input.reshape(-1).tolist()]
        if isinstance(model_input, str):
            return [model_input]
        return [str(t) for t in model_input]

    def predict(self, context, model_input, params=None):
        texts = self._texts(model_input)
        encs = self.tokenizer.encode_batch(texts)
        cols = {
            "input_ids": [e.ids for e in encs],
            "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs],
        }
        feed = {n: np.asarray(cols[n], dtype=dt) for n, dt in self.inputs.items() if n in cols}
        logits = self.session.run([self.output], feed)[0].astype(np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        labels = self.labels or [f"LABEL_{i}" for i in range(probs.shape[1])]
        best = probs.argmax(axis=1)
        # A data frame (label, score per text): `mlflow models serve` writes it as the records
        # [{"label": ..., "score": ...}] that hotserve's /invocations answers too, and MLServer's
        # pandas codec turns it into a BYTES and an FP64 output tensor.
        return pd.DataFrame({"label": [labels[int(b)] for b in best],
                             "score": probs[np.arange(len(best)), best]})


mlflow.models.set_model(OnnxTextClassifier())
