// MLflow's tracking REST API 2.0 (/api/2.0/mlflow/...) and its artifact
// proxy (/api/2.0/mlflow-artifacts/...), served from a DataDirectory, so
// that the `mlflow` client and existing training scripts work unchanged.
// Paths, fields and error codes follow mlflow/protos/service.proto and
// mlflow/server/handlers.py. Every route is also served under /ajax-api/.
//
// Thread-safety: handlers are thread-safe; `dir` must outlive the router.
#ifndef CAIRN_API_MLFLOW_API_H_
#define CAIRN_API_MLFLOW_API_H_

#include "api/data_directory.h"
#include "http/http.h"

namespace cairn::api {

void AddMlflowRoutes(DataDirectory& dir, http::Router& router);

// The server's own routes: /health, /version, and MLflow-style JSON 404/405s.
void AddServerRoutes(http::Router& router);

// All routes of `cairn server`.
http::Router BuildRouter(DataDirectory& dir);

}  // namespace cairn::api

#endif  // CAIRN_API_MLFLOW_API_H_
