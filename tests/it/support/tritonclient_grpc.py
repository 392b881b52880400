"""Drives hotserve's gRPC listener with the official Triton client (`tritonclient.grpc`, which
speaks KServe's inference.GRPCInferenceService and sends raw tensor contents), for
tests/it/grpc.rs. argv[1] is the listener's host:port; the server serves a text model named
"text" and a tensor model named "tensor". Prints one JSON object of what the client saw; the
Rust test asserts on it.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main():
    client = grpcclient.InferenceServerClient(url=sys.argv[1])
    seen = {
        "server_live": client.is_server_live(),
        "server_ready": client.is_server_ready(),
        "model_ready": {m: client.is_model_ready(m) for m in ("text", "tensor")},
        "server_metadata": client.get_server_metadata(as_json=True),
        "model_metadata": {
            m: client.get_model_metadata(m, as_json=True) for m in ("text", "tensor")
        },
    }

    texts = np.array([b"I love this", b"I hate this"], dtype=np.object_)
    text = grpcclient.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(texts)
    result = client.infer("text", [text], request_id="triton-1")
    seen["text"] = {
        "id": result.get_response().id,
        "labels": [v.decode() for v in result.as_numpy("label").tolist()],
        "probabilities": result.as_numpy("probabilities").tolist(),
    }
    only_label = client.infer(
        "text", [text], outputs=[grpcclient.InferRequestedOutput("label")]
    )
    seen["text_outputs"] = [o.name for o in only_label.get_response().outputs]

    rows = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    x = grpcclient.InferInput("x", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows)
    result = client.infer("tensor", [x])
    y = result.as_numpy("y")
    seen["tensor"] = {"shape": list(y.shape), "dtype": str(y.dtype), "y": y.tolist()}

    try:
        client.infer("nope", [x])
        seen["unknown_model"] = "answered"
    except InferenceServerException as err:
        seen["unknown_model"] = err.status()
    wrong = grpcclient.InferInput("x", list(rows.shape), "FP32")
    wrong.set_data_from_numpy(rows)
    wrong.set_shape([3, 4])  # two rows of data for a shape of three
    try:
        client.infer("tensor", [wrong])
        seen["bad_shape"] = "answered"
    except InferenceServerException as err:
        seen["bad_shape"] = [err.status(), err.message()]
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
