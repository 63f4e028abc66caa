// ServerProcess: a real `cairn server` child process on an ephemeral port,
// for tests and benchmarks that need the whole binary (kill -9, RSS).
//
// Thread-safety: not thread-safe.
//
// Usage:
//   auto server = ServerProcess::Start(CairnBinary(), data_dir);
//   ASSERT_TRUE(server.ok());
//   int port = (*server)->port();
//   (*server)->Kill(SIGKILL);
#ifndef CAIRN_TESTS_SUPPORT_SERVER_PROCESS_H_
#define CAIRN_TESTS_SUPPORT_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace cairn::testing {

// $CAIRN_BIN, else "cairn" next to the build's src/main.
std::string CairnBinary();

// Runs `args` (args[0] is the program), capturing stdout; returns the exit
// code (128 + signal when killed) and the output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::vector<std::string>& args);

class ServerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const std::string& binary, const std::string& data_dir);
  ~ServerProcess();  // SIGTERM and wait, if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Sends `signal` and waits; returns the exit code (128 + signal if killed).
  int Kill(int signal);
  // Peak resident memory (VmHWM) in bytes, from /proc.
  uint64_t PeakRssBytes() const;

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  int stdout_fd_ = -1;
};

}  // namespace cairn::testing

#endif  // CAIRN_TESTS_SUPPORT_SERVER_PROCESS_H_
