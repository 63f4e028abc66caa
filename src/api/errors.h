// The one place where Status codes become HTTP statuses and MLflow-style
// error bodies: {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "..."}.
//
// Thread-safety: stateless.
#ifndef CAIRN_API_ERRORS_H_
#define CAIRN_API_ERRORS_H_

#include <string>

#include "base/status.h"
#include "http/http.h"

namespace cairn::api {

struct ErrorMapping {
  int http_status;
  std::string error_code;
};

// The MLflow error code and HTTP status for `status` (not OK). A code
// attached with WithErrorCode() wins over the one derived from the Status code.
ErrorMapping MapError(const absl::Status& status);

// An MLflow-style JSON error response.
http::Response ErrorResponse(const absl::Status& status);

// `out` as a JSON body with `ok_status`, or its error as ErrorResponse does.
http::Response JsonOrError(const absl::StatusOr<Json>& out, int ok_status = 200);

}  // namespace cairn::api

#endif  // CAIRN_API_ERRORS_H_
