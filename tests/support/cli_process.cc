#include "tests/support/cli_process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fstream>
#include <iterator>

#include "tests/support/server_process.h"

extern char** environ;

namespace cairn::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

pid_t Cli::Start(const std::vector<std::string>& args, int* slot) {
  *slot = next_++;
  std::vector<std::string> argv = {CairnBinary()};
  argv.insert(argv.end(), mode_args_.begin(), mode_args_.end());
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env = {"XDG_CACHE_HOME=" + scratch_ + "/cache", "USER=tester"};
  for (const auto& [k, v] : extra_env_) env.push_back(k + "=" + v);
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view v(*e);
    if (v.rfind("XDG_CACHE_HOME=", 0) == 0 || v.rfind("USER=", 0) == 0) continue;
    const std::string name(v.substr(0, v.find('=')));
    if (!extra_env_.contains(name)) env.emplace_back(v);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, OutPath(*slot).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, ErrPath(*slot).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> cargv, cenv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (std::string& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

Cli::Outcome Cli::Finish(pid_t pid, int slot) {
  Outcome o;
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid) {
    o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  o.out = ReadFile(OutPath(slot));
  o.err = ReadFile(ErrPath(slot));
  return o;
}

Cli::Outcome Cli::Run(const std::vector<std::string>& args) {
  int slot = 0;
  pid_t pid = Start(args, &slot);
  return Finish(pid, slot);
}

std::string Describe(const Cli::Outcome& o) {
  return "exit " + std::to_string(o.exit_code) + "\nstdout: " + o.out + "\nstderr: " + o.err;
}

}  // namespace cairn::testing
