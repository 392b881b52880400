#!/usr/bin/env python3
"""Drives hotserve's Open Inference Protocol REST routes with the official client,
``tritonclient.http`` (pinned in scripts/requirements-test.txt), the way Triton users do.

    .venv/bin/python tests/it/support/triton_http.py HOST:PORT TEXT_MODEL TENSOR_MODEL TYPED_MODEL

TEXT_MODEL serves tests/fixtures/sentiment, TENSOR_MODEL tests/fixtures/tensor_model and
TYPED_MODEL tests/fixtures/typed_model, all in the same server. Checks readiness, metadata,
the repository index, and inference with and without binary data (tritonclient's default is binary), prints one line
per check and exits non-zero on the first failure (tests/it/oip.rs runs it).
"""

import sys

import numpy as np
import tritonclient.http as http
from tritonclient.utils import InferenceServerException


def check(what, condition, detail=""):
    if not condition:
        raise AssertionError(f"{what}: {detail}")
    print(f"ok: {what}")


def infer_text(client, model, binary):
    texts = np.array([b"I love this", b"I hate this"], dtype=np.object_)
    text = http.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(texts, binary_data=binary)
    outputs = [http.InferRequestedOutput("label", binary_data=binary),
               http.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer(model, [text], outputs=outputs, request_id="text-1")
    labels = [l.decode() if isinstance(l, bytes) else l for l in result.as_numpy("label")]
    probabilities = result.as_numpy("probabilities")
    check(f"text labels (binary={binary})", labels == ["POSITIVE", "NEGATIVE"], labels)
    check(f"text probabilities (binary={binary})",
          probabilities.dtype == np.float32 and probabilities.shape == (2, 2)
          and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5), probabilities)
    check("the request id comes back", result.get_response()["id"] == "text-1",
          result.get_response())
    return probabilities


def infer_tensor(client, model, binary):
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0]], dtype=np.float32)
    tensor = http.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [http.InferRequestedOutput("y", binary_data=binary)]
    y = client.infer(model, [tensor], outputs=outputs).as_numpy("y")
    w = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    expected = x @ w + np.array([0.1, 0.2, 0.3], dtype=np.float32)
    check(f"tensor y (binary={binary})", y.dtype == np.float32 and np.allclose(y, expected),
          y)


def infer_typed(client, model):
    feeds = {"f64": np.float64, "i64": np.int64, "i32": np.int32, "i8": np.int8,
             "u8": np.uint8, "flag": np.bool_, "half": np.float16}
    datatypes = {"f64": "FP64", "i64": "INT64", "i32": "INT32", "i8": "INT8", "u8": "UINT8",
                 "flag": "BOOL", "half": "FP16"}
    inputs = []
    for name, dtype in feeds.items():
        tensor = http.InferInput(name, [2, 2], datatypes[name])
        # FP16 has no JSON form in tritonclient: binary for every input, as its default.
        tensor.set_data_from_numpy(np.array([[1, 0], [3, 1]], dtype=dtype), binary_data=True)
        inputs.append(tensor)
    # No outputs named: tritonclient asks for all of them, as binary data.
    result = client.infer(model, inputs)
    f64 = result.as_numpy("f64_twice")
    check("FP64 out", f64.dtype == np.float64 and f64.tolist() == [[2, 0], [6, 2]], f64)
    i64 = result.as_numpy("i64_twice")
    check("INT64 out", i64.dtype == np.int64 and i64.tolist() == [[2, 0], [6, 2]], i64)
    i32 = result.as_numpy("i32_twice")
    check("INT32 out", i32.dtype == np.int32 and i32.tolist() == [[2, 0], [6, 2]], i32)
    i8 = result.as_numpy("i8_same")
    check("INT8 out", i8.dtype == np.int8 and i8.tolist() == [[1, 0], [3, 1]], i8)
    u8 = result.as_numpy("u8_same")
    check("UINT8 out", u8.dtype == np.uint8 and u8.tolist() == [[1, 0], [3, 1]], u8)
    flag = result.as_numpy("flag_not")
    check("BOOL out", flag.dtype == np.bool_ and flag.tolist() == [[False, True], [False, False]],
          flag)
    half = result.as_numpy("half_same")
    check("FP16 out", half.dtype == np.float16 and half.tolist() == [[1, 0], [3, 1]], half)
    as_fp32 = result.as_numpy("half_as_fp32")
    check("FP16 cast to FP32", as_fp32.dtype == np.float32 and as_fp32.tolist() == [[1, 0], [3, 1]],
          as_fp32)


def main():
    url, text_model, tensor_model, typed_model = sys.argv[1:5]
    client = http.InferenceServerClient(url=url)
    check("server live", client.is_server_live())
    check("server ready", client.is_server_ready())
    metadata = client.get_server_metadata()
    check("server metadata", metadata["name"] == "hotserve"
          and "binary_tensor_data" in metadata["extensions"], metadata)
    for model in (text_model, tensor_model, typed_model):
        check(f"{model} ready", client.is_model_ready(model))
    text_metadata = client.get_model_metadata(text_model)
    version = text_metadata["versions"][0]
    check("text model metadata", text_metadata["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]}] and text_metadata["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}], text_metadata)
    check("the live version is addressable", client.is_model_ready(text_model, version))
    check("its metadata too",
          client.get_model_metadata(text_model, version)["versions"] == [version])
    index = client.get_model_repository_index()
    check("the repository index names every model, ready, with its version",
          [(m["name"], m["state"]) for m in index]
          == [(text_model, "READY"), (tensor_model, "READY"), (typed_model, "READY")]
          and index[0]["version"] == version, index)
    tensor_metadata = client.get_model_metadata(tensor_model)
    check("tensor model metadata", tensor_metadata["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, 4]}], tensor_metadata)

    json_probabilities = infer_text(client, text_model, binary=False)
    binary_probabilities = infer_text(client, text_model, binary=True)
    check("JSON and binary agree", np.allclose(json_probabilities, binary_probabilities),
          (json_probabilities, binary_probabilities))
    infer_tensor(client, tensor_model, binary=False)
    infer_tensor(client, tensor_model, binary=True)
    infer_typed(client, typed_model)

    try:
        client.get_model_metadata(text_model, "999999")
        check("a version that is not resident is refused", False)
    except InferenceServerException as err:
        check("a version that is not resident names the live one",
              f"the live version is '{version}'" in str(err), err)
    try:
        bad = http.InferInput("x", [2, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((2, 3), dtype=np.float32))
        client.infer(tensor_model, [bad])
        check("a bad shape is refused", False)
    except InferenceServerException as err:
        check("a bad shape names the tensor", "input 'x' has shape [2, 3]" in str(err), err)
    print("all checks passed")


if __name__ == "__main__":
    main()
