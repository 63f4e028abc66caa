# Cairn's Python model worker. The server (src/serving/python_backend.cc)
# compiles this file into its binary and runs it as `python3 -c <this text>`
# in the model's folder; one process serves one loaded model, one request at
# a time.
#
# Protocol: frames on the worker's stdin (requests) and stdout (responses).
# A frame is a u32 little-endian header length, a UTF-8 JSON header, then
# the raw bytes of each tensor named in the header, in header order:
#   tensor header: {"name": str, "datatype": "FP32"|...|"BYTES",
#                   "shape": [int, ...], "size": int (bytes that follow)}
# Tensor bytes use the layout of src/serving/tensor.h (packed little-endian
# elements; BYTES: each element as u32 length + bytes).
#
#   1. load request:  {"model_file": abs path, "kind": "pickle"|"function",
#                      "method": "predict"|"predict_proba"}
#      response:      {"ready": true, "n_features_in": int (a pickle whose
#                     estimator knows it)} or an error frame, after which the
#                     worker exits with code 1.
#   2. infer request: {"inputs": [tensor header...],
#                      "outputs": [{"name", "datatype"}...]}  (outputs may be
#                      empty: the worker then reports what the model returned)
#      response:      {"outputs": [tensor header...]} + bytes, or an error frame.
#   error frame:      {"error": "<exception type>: <message>", "traceback": str}
#
# The model's own prints go to stderr: fd 1 is pointed at stderr once the
# protocol streams are duplicated, so that print() cannot corrupt a frame.
import json
import os
import struct
import sys
import traceback

# Private copies of the protocol streams; fds 0 and 1 become /dev/null and stderr.
_request_fd = os.dup(0)
_response_fd = os.dup(1)
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)
os.dup2(2, 1)
sys.stdout = sys.stderr

import numpy as np  # noqa: E402  (after the stream set-up, so its output cannot reach the protocol)

_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


def _read_exactly(n):
    """n bytes as a bytearray (writable: models may change their inputs in place), or None at EOF."""
    buffer = bytearray(n)
    view = memoryview(buffer)
    done = 0
    while done < n:
        got = os.readv(_request_fd, [view[done:]])
        if got == 0:
            return None
        done += got
    return buffer


def _read_frame():
    """Returns (header, [tensor bytes...]), or None at end of input."""
    raw = _read_exactly(4)
    if raw is None:
        return None
    (length,) = _LENGTH.unpack(raw)
    header = json.loads(_read_exactly(length))
    blobs = []
    for spec in header.get("inputs", []):
        blob = _read_exactly(int(spec["size"]))
        if blob is None:
            return None
        blobs.append(blob)
    return header, blobs


def _write_frame(header, blobs=()):
    text = json.dumps(header).encode("utf-8")
    data = b"".join([_LENGTH.pack(len(text)), text, *blobs])
    view = memoryview(data)
    while view:
        written = os.write(_response_fd, view)
        view = view[written:]


def _write_error(exc):
    # The traceback's last line ("ValueError: ..."); a SyntaxError's also
    # says where, which its last line does not.
    message = traceback.format_exception_only(type(exc), exc)[-1].strip()
    if isinstance(exc, SyntaxError) and exc.filename:
        message += f" ({os.path.basename(exc.filename)}, line {exc.lineno})"
    _write_frame({"error": message, "traceback": traceback.format_exc()})


def _decode_bytes(blob, shape):
    elements = []
    offset = 0
    while offset < len(blob):
        (n,) = _LENGTH.unpack_from(blob, offset)
        offset += 4
        elements.append(bytes(blob[offset:offset + n]))
        offset += n
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


def _to_array(spec, blob):
    shape = tuple(int(d) for d in spec["shape"])
    if spec["datatype"] == "BYTES":
        return _decode_bytes(blob, shape)
    return np.frombuffer(blob, dtype=_DTYPES[spec["datatype"]]).reshape(shape)


def _datatype_of(array):
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    for name, dtype in _DTYPES.items():
        if array.dtype == dtype or (array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize):
            return name
    raise TypeError(f"model returned an array of unsupported dtype {array.dtype}")


def _encode(name, value, datatype):
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"output '{name}' is a scalar; expected an array with the batch as dimension 0")
    if datatype is None:
        datatype = _datatype_of(array)
    if datatype == "BYTES":
        parts = []
        for element in array.reshape(-1):
            if isinstance(element, str):
                element = element.encode("utf-8")
            elif not isinstance(element, (bytes, bytearray)):
                element = str(element).encode("utf-8")
            parts.append(_LENGTH.pack(len(element)))
            parts.append(bytes(element))
        blob = b"".join(parts)
    else:
        blob = np.ascontiguousarray(array, dtype=_DTYPES[datatype]).tobytes()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "size": len(blob)}, blob


class _PickledEstimator:
    def __init__(self, path, method):
        import pickle

        with open(path, "rb") as f:
            self._estimator = pickle.load(f)
        if method not in ("predict", "predict_proba"):
            raise ValueError(f"unsupported method '{method}' (expected predict or predict_proba)")
        if not hasattr(self._estimator, method):
            raise TypeError(f"{type(self._estimator).__name__} has no method {method}()")
        self._method = getattr(self._estimator, method)
        self._output = "predict" if method == "predict" else "probabilities"
        self.n_features_in = getattr(self._estimator, "n_features_in_", None)

    def __call__(self, arrays):
        # One 2-D input is the matrix; a single 1-D BYTES input stays 1-D
        # (text pipelines take a sequence of documents); otherwise 1-D inputs
        # are columns, stacked in signature order.
        if len(arrays) == 1:
            matrix = arrays[0]
            if matrix.ndim == 1 and matrix.dtype != object:
                matrix = matrix.reshape(-1, 1)
        else:
            matrix = np.column_stack(arrays)
        return {self._output: self._method(matrix)}


class _PredictFunction:
    def __init__(self, path):
        import importlib.util

        sys.path.insert(0, os.path.dirname(path))
        spec = importlib.util.spec_from_file_location("cairn_model", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self._predict = getattr(module, "predict", None)
        if not callable(self._predict):
            raise AttributeError(f"{os.path.basename(path)} defines no predict(inputs) function")

    def __call__(self, named):
        result = self._predict(named)
        if isinstance(result, dict):
            return result
        return {"predict": result}


def _serve(model):
    while True:
        frame = _read_frame()
        if frame is None:
            return
        header, blobs = frame
        try:
            specs = header["inputs"]
            arrays = [_to_array(spec, blob) for spec, blob in zip(specs, blobs)]
            if isinstance(model, _PickledEstimator):
                results = model(arrays)
            else:
                results = model({spec["name"]: array for spec, array in zip(specs, arrays)})
            wanted = header.get("outputs") or [{"name": name, "datatype": None} for name in results]
            out_specs, out_blobs = [], []
            for want in wanted:
                if want["name"] not in results:
                    raise KeyError(f"model returned no output '{want['name']}' (it returned {sorted(results)})")
                spec, blob = _encode(want["name"], results[want["name"]], want["datatype"])
                out_specs.append(spec)
                out_blobs.append(blob)
        except Exception as exc:  # noqa: BLE001  (any model error is the request's error)
            _write_error(exc)
            continue
        _write_frame({"outputs": out_specs}, out_blobs)


def _main():
    frame = _read_frame()
    if frame is None:
        return 0
    load = frame[0]
    try:
        if load["kind"] == "pickle":
            model = _PickledEstimator(load["model_file"], load.get("method", "predict"))
        else:
            model = _PredictFunction(load["model_file"])
    except BaseException as exc:  # noqa: BLE001  (SystemExit at import is a load failure too)
        _write_error(exc)
        return 1
    ready = {"ready": True}
    n_features_in = getattr(model, "n_features_in", None)
    if n_features_in is not None:
        ready["n_features_in"] = int(n_features_in)
    _write_frame(ready)
    _serve(model)
    return 0


sys.exit(_main())
