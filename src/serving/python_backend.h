// The Python model backend: serves a pickled estimator (`.pkl`/`.pickle`,
// e.g. scikit-learn) or a `.py` file defining
//   predict(inputs: dict[str, numpy.ndarray]) -> numpy.ndarray | dict[str, numpy.ndarray]
// with a pool of python3 worker processes. Each worker loads the model once
// and then answers requests framed on its stdin/stdout (the protocol is
// described in python_worker.py, which is compiled into the binary, so an
// installed `cairn` needs no extra file).
//
// Why processes and not an embedded interpreter: a model's Python code can
// crash, leak, hold the GIL or call os._exit; a process boundary keeps the
// server alive. A worker that dies mid-request fails only that request
// (kUnavailable, with its exit status and last stderr lines) and is replaced
// in the background; a worker slower than BackendOptions::python_timeout_ms
// is killed (SIGKILL) and replaced, its request failing kDeadlineExceeded; a
// Python exception fails the request with kInvalidArgument and the exception
// text, and the worker keeps serving.
//
// Descriptor options (ModelDescriptor::options) for a pickle:
//   "method": "predict" (default; output "predict") or "predict_proba"
//             (output "probabilities").
// Inputs: one 2-D input is passed to the estimator as the matrix (one 1-D
// numeric input as a one-column matrix; one 1-D BYTES input as is, for text
// pipelines); several 1-D inputs are stacked as its columns in signature
// order (see model_backend.h). A pickle whose descriptor declares no inputs
// gets "input" FP64 [-1, n_features_in_]. A `.py` predict() receives every
// input by name; a bare array it returns is the output "predict". BYTES
// tensors arrive as numpy object arrays of `bytes`. Outputs are cast to the
// declared datatypes; outputs missing from the descriptor's signature are
// learnt at load from a warm-up call on zeros of batch 1. An empty batch
// gets empty outputs without a call to Python.
//
// A worker's stderr goes to the server log (one line per line, at info) and
// its last lines into the error of a request it failed by dying.
// BackendOptions::threads becomes OMP/OpenBLAS/MKL_NUM_THREADS in each
// worker (unless the server's environment sets them).
//
// Thread-safety: Infer may be called from many threads; each call takes an
// idle worker (blocking while all are busy; the timeout starts once it has
// one). A supervisor thread per backend starts and replaces workers. The
// workers die with the server (PR_SET_PDEATHSIG) and each runs in its own
// process group, so that killing it also kills processes the model started.
//
// Usage:
//   ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> model,
//                    LoadPythonModel(descriptor, {.python_workers = 2}));
//   ASSIGN_OR_RETURN(std::vector<Tensor> outputs, model->Infer(inputs));
#ifndef CAIRN_SERVING_PYTHON_BACKEND_H_
#define CAIRN_SERVING_PYTHON_BACKEND_H_

#include <memory>

#include "base/status.h"
#include "serving/model_backend.h"

namespace cairn::serving {

// Starts options.python_workers (at least 1) workers running
// options.python, each loading descriptor.model_dir/model_file. REQUIRES:
// descriptor.flavor == Flavor::kPython.
//
// Errors: kInvalidArgument for an unsupported model file or option, or when
// the model fails to load (ImportError, a bad pickle, a predict() that
// fails on the warm-up input: the message carries the Python traceback's
// last line); kNotFound when the model file is missing; kUnavailable when
// the interpreter cannot be started. On failure no worker process is left.
//
// Ownership: the returned backend owns its worker processes; destroying it
// (REQUIRES: no Infer in flight) closes their pipes, sends SIGTERM to their
// process groups, then SIGKILL after a grace period of 2 s, and reaps every
// worker.
absl::StatusOr<std::unique_ptr<ModelBackend>> LoadPythonModel(const ModelDescriptor& descriptor,
                                                              const BackendOptions& options);

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_PYTHON_BACKEND_H_
