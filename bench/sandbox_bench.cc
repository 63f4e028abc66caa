// Sandbox start overhead (exec/sandbox_executor.h): /bin/true submitted to
// the local SandboxExecutor and waited for (spec.json and result.json
// written, cgroups made and removed, bubblewrap with every namespace
// unshared) against a bare fork/exec/wait of /bin/true. The design target
// is at most 10 ms over the bare process. For reference it also times the
// same job through RunInSandbox (no executor) and bubblewrap alone. Prints
// one JSON line.
//
// Usage: sandbox_bench [RUNS] [CGROUP_ROOT]   (default 50 runs; $TMPDIR holds
// the job dirs; CGROUP_ROOT "none" times the sandbox without cgroups)
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/json.h"
#include "exec/sandbox_executor.h"

extern char** environ;

namespace {

using cairn::exec::JobSpec;
using cairn::exec::JobState;
using cairn::exec::SandboxExecutor;
using cairn::exec::SandboxOptions;

double Millis(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

// The p-quantile of `v`; -1 for none.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

void Die(const char* what, const std::string& why) {
  std::fprintf(stderr, "%s: %s\n", what, why.c_str());
  std::exit(1);
}

// fork, exec `argv`, wait; as uid/gid 65534 when `drop` (and we are root).
// Milliseconds, or -1 when the command failed.
double Spawn(const std::vector<const char*>& args, bool drop) {
  std::vector<char*> argv;
  for (const char* a : args) argv.push_back(const_cast<char*>(a));
  argv.push_back(nullptr);
  const bool root = ::geteuid() == 0;
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    if (drop && root && (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                         ::setresuid(65534, 65534, 65534) != 0)) {
      ::_exit(126);
    }
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  const double ms = Millis(t0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ms : -1;
}

// bubblewrap alone, the way the notes measured it: a minimal root, every
// namespace unshared, no cgroups, no staging, no job files.
const std::vector<const char*> kBwrapOnly = {
    "/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
    "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
    "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/bin/true"};

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
  const char* tmp_env = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp_env != nullptr && *tmp_env != '\0' ? tmp_env : "/tmp") + "/cairn-sandbox-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp", "failed");

  SandboxOptions options;
  if (argc > 2) options.cgroup_root = argv[2];
  auto executor = SandboxExecutor::Create(options, 1);
  if (!executor.ok()) {
    // No sandbox here (no bwrap, no user namespaces): say so, and let the other benchmarks run.
    cairn::Json line = {{"bench", "sandbox_start"}, {"skipped", std::string(executor.status().message())}};
    std::printf("%s\n", line.dump().c_str());
    std::filesystem::remove_all(tmpl);
    return 0;
  }

  JobSpec spec;
  spec.name = "bench";
  spec.argv = {"/bin/true"};

  // Interleaved, so that a change in the machine's load hits every variant alike.
  std::vector<double> sandbox_ms, direct_ms, bwrap_ms, bare_ms;
  for (int i = 0; i < runs + 3; ++i) {  // the first 3 warm up
    // Every job gets a fresh job dir, as real ones do (made before the clock starts).
    spec.job_dir = tmpl + "/job-" + std::to_string(i);
    std::filesystem::create_directory(spec.job_dir);
    auto t0 = std::chrono::steady_clock::now();
    auto id = (*executor)->Submit(spec);
    if (!id.ok()) Die("Submit", std::string(id.status().message()));
    auto st = (*executor)->Wait(*id, absl::Seconds(60));
    if (!st.ok() || st->state != JobState::kSucceeded) {
      Die("job", st.ok() ? st->reason : std::string(st.status().message()));
    }
    const double sandbox = Millis(t0);
    spec.job_dir += "-direct";
    std::filesystem::create_directory(spec.job_dir);
    t0 = std::chrono::steady_clock::now();
    auto direct = cairn::exec::RunInSandbox(spec, "bench", options);
    if (!direct.ok() || direct->state != JobState::kSucceeded) Die("RunInSandbox", "failed");
    const double direct_run = Millis(t0);
    const double bwrap = Spawn(kBwrapOnly, /*drop=*/true);
    const double bare = Spawn({"/bin/true"}, /*drop=*/false);
    if (bare < 0) Die("spawn", "/bin/true failed");
    if (i >= 3) {
      sandbox_ms.push_back(sandbox);
      direct_ms.push_back(direct_run);
      if (bwrap >= 0) bwrap_ms.push_back(bwrap);  // the reference only; may not run here
      bare_ms.push_back(bare);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);

  // sandbox: Submit + Wait on the executor; run_in_sandbox: the same job in
  // the foreground (no worker thread, no job files); bwrap_only: bubblewrap
  // alone; bare: fork/exec/wait.
  const double sandbox_p50 = Percentile(sandbox_ms, 0.5);
  const double bare_p50 = Percentile(bare_ms, 0.5);
  std::printf(
      "{\"bench\":\"sandbox_start\",\"cgroups\":%s,\"runs\":%d,\"sandbox_ms_p50\":%.2f,\"sandbox_ms_p90\":%.2f,"
      "\"run_in_sandbox_ms_p50\":%.2f,\"bwrap_only_ms_p50\":%.2f,\"bare_ms_p50\":%.2f,"
      "\"overhead_ms_p50\":%.2f,\"target_ms\":10}\n",
      options.cgroup_root == "none" ? "false" : "true", runs, sandbox_p50, Percentile(sandbox_ms, 0.9), Percentile(direct_ms, 0.5), Percentile(bwrap_ms, 0.5),
      bare_p50, sandbox_p50 - bare_p50);
  return 0;
}
