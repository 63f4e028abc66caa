// Cli: runs the real `cairn` binary as a child process with stdout and
// stderr captured in files (so that error messages on stderr can be
// checked), its own cache directory and USER=tester, in a fixed mode (e.g.
// {"--data-dir", DIR} or {"--url", URL}).
//
// Thread-safety: not thread-safe.
//
// Usage:
//   Cli cli({"--data-dir", dir}, scratch);
//   Cli::Outcome o = cli.Run({"data", "list"});
//   EXPECT_EQ(o.exit_code, 0) << Describe(o);
#ifndef CAIRN_TESTS_SUPPORT_CLI_PROCESS_H_
#define CAIRN_TESTS_SUPPORT_CLI_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace cairn::testing {

class Cli {
 public:
  struct Outcome {
    int exit_code = -1;
    std::string out;
    std::string err;
  };

  // `scratch` must exist; output files and the cache go there.
  Cli(std::vector<std::string> mode_args, std::string scratch)
      : mode_args_(std::move(mode_args)), scratch_(std::move(scratch)) {}

  // Extra environment variables for every command.
  void SetEnv(const std::string& name, const std::string& value) { extra_env_[name] = value; }

  // Starts `cairn MODE_ARGS args...`; returns its pid (-1 if it did not start).
  pid_t Start(const std::vector<std::string>& args, int* slot);
  // Waits for it and collects its exit code and output.
  Outcome Finish(pid_t pid, int slot);
  Outcome Run(const std::vector<std::string>& args);

 private:
  std::string OutPath(int slot) const { return scratch_ + "/out." + std::to_string(slot); }
  std::string ErrPath(int slot) const { return scratch_ + "/err." + std::to_string(slot); }

  const std::vector<std::string> mode_args_;
  const std::string scratch_;
  std::map<std::string, std::string> extra_env_;
  int next_ = 0;
};

// "exit N\nstdout: ...\nstderr: ..." for assertion messages.
std::string Describe(const Cli::Outcome& o);

}  // namespace cairn::testing

#endif  // CAIRN_TESTS_SUPPORT_CLI_PROCESS_H_
