#include "api/errors.h"

#include <spdlog/spdlog.h>

#include <string_view>

namespace cairn::api {
namespace {

// mlflow/protos/databricks.proto codes -> HTTP status (mlflow/exceptions.py).
int HttpStatusOf(std::string_view code) {
  struct Entry {
    std::string_view code;
    int status;
  };
  static constexpr Entry kTable[] = {
      {"INVALID_PARAMETER_VALUE", 400}, {"BAD_REQUEST", 400},          {"RESOURCE_ALREADY_EXISTS", 400},
      {"INVALID_STATE", 400},           {"RESOURCE_DOES_NOT_EXIST", 404}, {"ENDPOINT_NOT_FOUND", 404},
      {"PERMISSION_DENIED", 403},       {"UNAUTHENTICATED", 401},      {"REQUEST_LIMIT_EXCEEDED", 429},
      {"RESOURCE_EXHAUSTED", 429},      {"TEMPORARILY_UNAVAILABLE", 503}, {"NOT_IMPLEMENTED", 501},
      {"RESOURCE_CONFLICT", 409},       {"DATA_LOSS", 500},            {"INTERNAL_ERROR", 500},
  };
  for (const Entry& e : kTable) {
    if (e.code == code) return e.status;
  }
  return 500;
}

}  // namespace

ErrorMapping MapError(const absl::Status& status) {
  if (auto code = ErrorCodeOf(status)) return {HttpStatusOf(*code), *code};
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return {400, "INVALID_PARAMETER_VALUE"};
    case absl::StatusCode::kNotFound:
      return {404, "RESOURCE_DOES_NOT_EXIST"};
    case absl::StatusCode::kAlreadyExists:
      return {400, "RESOURCE_ALREADY_EXISTS"};
    case absl::StatusCode::kFailedPrecondition:
      return {400, "INVALID_STATE"};
    case absl::StatusCode::kPermissionDenied:
      return {403, "PERMISSION_DENIED"};
    case absl::StatusCode::kUnauthenticated:
      return {401, "UNAUTHENTICATED"};
    case absl::StatusCode::kResourceExhausted:
      return {429, "REQUEST_LIMIT_EXCEEDED"};
    case absl::StatusCode::kUnavailable:
      return {503, "TEMPORARILY_UNAVAILABLE"};
    case absl::StatusCode::kUnimplemented:
      return {501, "NOT_IMPLEMENTED"};
    case absl::StatusCode::kDataLoss:
      return {500, "DATA_LOSS"};
    case absl::StatusCode::kAborted:  // a compare-and-swap lost a race: retry
      return {409, "RESOURCE_CONFLICT"};
    default:
      return {500, "INTERNAL_ERROR"};
  }
}

http::Response ErrorResponse(const absl::Status& status) {
  ErrorMapping m = MapError(status);
  // Client mistakes are answered, not logged; server-side failures are both.
  if (m.http_status >= 500) spdlog::error("{}: {}", m.error_code, status.message());
  return http::Response::JsonBody(m.http_status,
                                  Json{{"error_code", m.error_code}, {"message", std::string(status.message())}});
}

http::Response JsonOrError(const absl::StatusOr<Json>& out, int ok_status) {
  if (!out.ok()) return ErrorResponse(out.status());
  return http::Response::JsonBody(ok_status, *out);
}

}  // namespace cairn::api
