// The Open Inference Protocol v2 over HTTP/REST, on top of an
// InferencePlane: what `cairn server` (in-process, the embedded default) and
// `cairn serve` (stand-alone replicas) answer on /v2/... and /metrics.
//
// Routes (KServe "V2" required API, Triton's binary tensor extension and
// statistics extension):
//   GET  /v2                                         server metadata
//   GET  /v2/health/live, /v2/health/ready           200, or 503 when not ready
//   GET  /v2/models/NAME[/versions/V]                model metadata
//   GET  /v2/models/NAME[/versions/V]/ready          200, or 503 when not loaded (404 unknown)
//   POST /v2/models/NAME[/versions/V]/infer          inference (JSON or binary tensors)
//   GET  /v2/models/stats, /v2/models/NAME/stats     per-version statistics
//   GET  /metrics                                    Prometheus text format 0.0.4
//   GET  /api/cairn/v1/serving                       what this plane serves (deployments, errors)
// NAME is a deployment's name (by default the registered model's). Every
// infer response carries the version that answered ("model_version" and
// the X-Cairn-Model-Version header) and the prediction id
// (X-Cairn-Prediction-Id; the request's "id" when it gave one).
// Errors: {"error": "..."} with 400 (malformed body, wrong input), 404
// (unknown model or version), 429 (queue full), 503 (not loaded, stopping),
// 504 (deadline passed). A request's deadline: the X-Cairn-Timeout-Ms header
// or the request parameter "timeout_ms", else the deployment's timeout_ms.
//
// Thread-safety: handlers are thread-safe; `plane` must outlive the router.
#ifndef CAIRN_API_INFERENCE_API_H_
#define CAIRN_API_INFERENCE_API_H_

#include "http/http.h"
#include "serving/inference_plane.h"

namespace cairn::api {

void AddInferenceRoutes(serving::InferencePlane& plane, http::Router& router);

}  // namespace cairn::api

#endif  // CAIRN_API_INFERENCE_API_H_
