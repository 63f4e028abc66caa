#include "tests/support/server_process.h"

#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

extern char** environ;

namespace cairn::testing {
namespace {

// Spawns `args` with stdout on a pipe; returns the pid and the read end.
absl::StatusOr<std::pair<pid_t, int>> SpawnWithStdout(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return absl::NotFoundError(fmt::format("cannot run {}", args[0]));
  }
  return std::make_pair(pid, fds[0]);
}

int WaitExit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

std::string CairnBinary() {
  if (const char* bin = std::getenv("CAIRN_BIN")) return bin;
  if (const char* dir = std::getenv("CAIRN_BINARY_DIR")) return std::string(dir) + "/src/main/cairn";
  return CAIRN_DEFAULT_BIN;
}

CommandResult RunCommand(const std::vector<std::string>& args) {
  CommandResult result;
  auto spawned = SpawnWithStdout(args);
  if (!spawned.ok()) return result;
  char buf[4096];
  ssize_t n;
  while ((n = read(spawned->second, buf, sizeof buf)) > 0) result.output.append(buf, n);
  close(spawned->second);
  result.exit_code = WaitExit(spawned->first);
  return result;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(const std::string& binary,
                                                                    const std::string& data_dir) {
  ASSIGN_OR_RETURN(auto spawned, SpawnWithStdout({binary, "server", "--port", "0", "--data-dir", data_dir,
                                                  "--log-level", "warn"}));
  auto p = std::unique_ptr<ServerProcess>(new ServerProcess());
  p->pid_ = spawned.first;
  p->stdout_fd_ = spawned.second;
  // The first line says "Cairn server listening on http://HOST:PORT".
  std::string line;
  char c;
  while (read(p->stdout_fd_, &c, 1) == 1 && c != '\n') line += c;
  size_t colon = line.rfind(':');
  if (line.find("listening on") == std::string::npos || colon == std::string::npos) {
    return absl::UnavailableError(fmt::format("{} did not start (said: '{}')", binary, line));
  }
  p->port_ = std::atoi(line.c_str() + colon + 1);
  return p;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Kill(SIGTERM);
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

int ServerProcess::Kill(int signal) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  int code = WaitExit(pid_);
  pid_ = -1;
  return code;
}

uint64_t ServerProcess::PeakRssBytes() const {
  std::ifstream status(fmt::format("/proc/{}/status", pid_));
  std::string key;
  while (status >> key) {
    if (key == "VmHWM:") {
      uint64_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

}  // namespace cairn::testing
