// `cairn server` and `cairn fsck`: the commands that own a data directory.
//
// Thread-safety: each runs once per process.
#ifndef CAIRN_CLI_SERVER_COMMAND_H_
#define CAIRN_CLI_SERVER_COMMAND_H_

#include <string>

#include "base/status.h"

namespace cairn::cli {

struct ServerOptions {
  std::string host;
  int port = 0;
  std::string data_dir;
  std::string log_level = "info";
  double payload_sample = 1;  // fraction of predictions in the payload log
};

// Serves until SIGINT/SIGTERM. Prints "Cairn server listening on
// http://HOST:PORT" to stdout once ready (scripts and tests read it).
absl::Status RunServer(const ServerOptions& options);

// Verifies every object, the database and the references between them;
// prints a report. Returns the number of problems found (0 = clean).
absl::StatusOr<int> RunFsck(const std::string& data_dir, bool json);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_SERVER_COMMAND_H_
