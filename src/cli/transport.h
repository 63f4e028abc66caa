// Transport: how CLI commands reach the Cairn API — over HTTP to a server
// (CAIRN_URL / --url), or in-process against an embedded data directory,
// through the very same router the server uses, so both paths behave alike.
//
// Thread-safety: not thread-safe (one command at a time).
//
// Usage:
//   ASSIGN_OR_RETURN(auto t, Transport::Connect(options));
//   ASSIGN_OR_RETURN(Json runs, t->Post("/api/2.0/mlflow/runs/search", body));
#ifndef CAIRN_CLI_TRANSPORT_H_
#define CAIRN_CLI_TRANSPORT_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/status.h"

namespace cairn::api {
class DataDirectory;
}  // namespace cairn::api

namespace cairn::cli {

struct TransportOptions {
  std::string url;       // non-empty: talk to this server
  std::string data_dir;  // otherwise: open this data directory in-process
};

class Transport {
 public:
  static absl::StatusOr<std::unique_ptr<Transport>> Connect(const TransportOptions& options);
  virtual ~Transport() = default;

  // `target` is path + optional "?query". Non-2xx answers become a Status
  // carrying the server's message and error code.
  virtual absl::StatusOr<Json> Get(std::string_view target) = 0;
  virtual absl::StatusOr<Json> Post(std::string_view target, const Json& body) = 0;
  // Streams a file download to `sink`.
  virtual absl::Status Download(std::string_view target, const std::function<absl::Status(std::string_view)>& sink) = 0;
  // POSTs a binary body (application/octet-stream).
  virtual absl::StatusOr<Json> PostBytes(std::string_view target, std::string_view body) = 0;
  virtual absl::StatusOr<Json> Delete(std::string_view target) = 0;
  // The data directory in embedded mode (commands with a faster direct path
  // use it); nullptr over HTTP.
  virtual api::DataDirectory* embedded() { return nullptr; }
  // Where commands are going, for messages ("http://127.0.0.1:5000" or "./cairn-data").
  virtual std::string Describe() const = 0;
};

}  // namespace cairn::cli

#endif  // CAIRN_CLI_TRANSPORT_H_
