// The TorchScript backend's front door. libtorch adds ~0.9 s of start-up to
// any binary that links it (static operator registration) and one
// translation unit using it takes ~40 s to compile, so the backend lives in
// its own shared library, libcairn_torch.so, that is dlopen'd the first time
// a TorchScript model is loaded (the way Triton loads its backends). This
// file is the only part of that path linked into cairn_serving; it includes
// no torch headers.
//
// The library is looked up, first match wins, at:
//   1. BackendOptions::torch_library, when set;
//   2. else $CAIRN_TORCH_BACKEND, when set;
//   (an explicit path from 1 or 2 is the only one tried: a wrong path is
//   reported rather than silently replaced by another build)
//   3. the directory of the running executable (/proc/self/exe);
//   4. ../lib/cairn/ relative to that directory (an installed layout:
//      bin/cairn + lib/cairn/libcairn_torch.so).
//
// The plug-in boundary is one versioned C entry point (kTorchEntryPoint);
// a library without it (an older or foreign build) is refused with
// kFailedPrecondition rather than called with a mismatched ABI. The library
// must be built by the same compiler and standard library as the host,
// because the backend it returns is a C++ object (ModelBackend).
//
// Thread-safety: LoadTorchScriptModel may be called from any thread; the
// library is opened once per process per path and never closed (backends it
// created may outlive any one caller, and libtorch does not support being
// unloaded).
//
// Usage:
//   ASSIGN_OR_RETURN(ModelDescriptor d, ReadModelDescriptor(dir));
//   ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> m,
//                    LoadTorchScriptModel(d, {.threads = 4}));
#ifndef CAIRN_SERVING_TORCH_LOADER_H_
#define CAIRN_SERVING_TORCH_LOADER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "serving/model_backend.h"

namespace cairn::serving {

// The file name of the backend library.
inline constexpr char kTorchLibraryName[] = "libcairn_torch.so";

// The C entry point the library exports. Its ABI, version 1:
//   extern "C" int cairn_torch_backend_v1(const ModelDescriptor* descriptor,
//                                         const BackendOptions* options,
//                                         ModelBackend** out,
//                                         char* error, size_t error_size);
// Returns 0 on success with *out set to a new backend (the caller owns it
// and deletes it with `delete`). Otherwise returns an absl::StatusCode value
// and writes a NUL-terminated message into error[0, error_size); *out is
// left null. It never throws.
inline constexpr char kTorchEntryPoint[] = "cairn_torch_backend_v1";
using TorchBackendEntryPoint = int (*)(const ModelDescriptor* descriptor, const BackendOptions* options,
                                       ModelBackend** out, char* error, size_t error_size);

// Loads `descriptor` (flavor kTorchScript) with the TorchScript backend
// (platform "pytorch_torchscript"), opening libcairn_torch.so on first use.
//
// Signature: TorchScript archives carry no datatypes, so the descriptor must
// declare the inputs. Datatypes: BOOL, UINT8, INT8, INT16, INT32, INT64,
// FP16, FP32, FP64 (torch has no UINT16/32/64 or BYTES); every input and
// output has dimension 0 as the batch. Inputs are passed to forward()
// positionally in signature order, wrapped without a copy (a model must not
// write into its inputs in place); when forward() takes one tensor and the
// signature declares several 1-D/2-D inputs of one datatype (an MLflow
// column-based signature), they are its columns, in signature order.
// forward() may return a tensor, a tuple or list of tensors (mapped to the
// declared outputs in order) or a dict str -> tensor (mapped by name);
// outputs are converted to the declared datatype. Outputs the descriptor
// leaves out are derived from the warm-up result: "output0", "output1", ...
// or the dict's keys, with the datatype and inner dimensions torch returned.
//
// Errors: kFailedPrecondition when the library cannot be found or opened
// ("TorchScript support is not installed: libcairn_torch.so not found
// (looked in ...)") or lacks the entry point; kInvalidArgument for a missing
// signature or a datatype torch lacks, an archive torch cannot load, or a
// model that fails its warm-up forward on zeros (a signature that does not
// match the model); kNotFound when the model file does not exist.
// Infer returns kInvalidArgument when the model rejects the inputs (an
// operator error or the model's own `raise`, with its message) and
// kInternal when its outputs do not fit the signature.
//
// Runtime: BackendOptions::gpu uses CUDA only when libtorch was built with
// it and a GPU is present, else the CPU (Debian's libtorch has no CUDA).
// libtorch's settings are process-wide, so the first TorchScript load makes
// them and they are kept: BackendOptions::threads becomes the intra-op (and,
// when still possible, inter-op) thread count, and the profiling executor
// is turned off (its first calls after a load are ~10x slower). Each model
// runs one forward on zeros of batch 1 before it is returned (warm-up).
// memory_bytes() is the size of the module's parameters and buffers.
//
// Ownership: the caller owns the returned backend; nothing is kept on failure.
absl::StatusOr<std::unique_ptr<ModelBackend>> LoadTorchScriptModel(const ModelDescriptor& descriptor,
                                                                   const BackendOptions& options);

// The paths LoadTorchScriptModel would try for `options`, in order
// (exposed so that `cairn` can report where it looked, and for tests).
std::vector<std::string> TorchLibraryCandidates(const BackendOptions& options);

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_TORCH_LOADER_H_
