// The XGBoost model backend: a booster loaded through XGBoost's C API
// (libxgboost), answering with XGBoosterPredictFromDense on the request's
// rows. Reads XGBoost's JSON, UBJSON and legacy binary models (the format is
// recognised from the bytes, not the file name: MLflow names them model.xgb
// whatever the format).
//
// Signature: the inputs are the descriptor's when it declares them (numeric
// datatypes; several inputs are the columns of one matrix, in signature
// order: a 1-D input is one column, a 2-D input [-1, k] is k columns; together
// they must give the booster's number of features). Without them, one input
// "input" FP32 [-1, num_feature]. One output, FP32 (XGBoost predicts in
// float): named as the descriptor's single output, else "predict"; shaped
// [-1] or [-1, K] (multi-class probabilities, multi-target), as the booster
// answers. A declared output datatype such as MLflow's "long" for a
// scikit-learn classifier's labels is replaced: the booster computes what
// Booster.predict does (probabilities), not the wrapper's labels.
//
// Inputs of other numeric datatypes than FP32 are converted to float (as the
// Python package does); NaN is a missing value.
//
// Thread-safety: Infer may be called from several threads at once (XGBoost
// keeps prediction buffers per thread and per booster; the booster is
// configured at load by a warm-up prediction).
//
// Usage:
//   ASSIGN_OR_RETURN(ModelDescriptor d, ReadModelDescriptor(dir));
//   ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> m, LoadXgboostModel(d, {.threads = 1}));
//   ASSIGN_OR_RETURN(std::vector<Tensor> out, m->Infer(inputs));
//
// Ownership: the caller owns the returned backend, which owns the booster;
// nothing is kept on failure.
#ifndef CAIRN_SERVING_XGBOOST_BACKEND_H_
#define CAIRN_SERVING_XGBOOST_BACKEND_H_

#include <memory>

#include "base/status.h"
#include "serving/model_backend.h"

namespace cairn::serving {

// Loads descriptor.model_dir/descriptor.model_file with
// nthread = options.threads. kNotFound when the model file does not exist;
// kInvalidArgument (naming the file) for a file XGBoost cannot read or a
// declared signature that does not fit the model.
absl::StatusOr<std::unique_ptr<ModelBackend>> LoadXgboostModel(const ModelDescriptor& descriptor,
                                                               const BackendOptions& options);

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_XGBOOST_BACKEND_H_
