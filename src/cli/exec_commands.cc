#include "cli/exec_commands.h"

#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>

#include "cli/cli_common.h"
#include "exec/sandbox.h"

namespace cairn::cli {
namespace {

// Set from a signal handler, hence a lock-free atomic with static storage;
// RunJobDirectory polls it and stops the job.
std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void RequestStop(int) { stop_requested.store(true); }

}  // namespace

void AddExecCommands(CLI::App& app, int& exit_code) {
  auto* exec_job = app.add_subcommand("exec-job", "Run a job directory's job in the sandbox (Slurm runs this)");
  exec_job->group("");  // hidden from --help: only the Slurm batch script calls it
  auto job_dir = std::make_shared<std::string>();
  exec_job->add_option("job_dir", *job_dir, "the job directory (holds spec.json)")->required();
  exec_job->callback([job_dir, &exit_code] {
    // scancel and Slurm's time limit send SIGTERM to every process of the
    // job: stop the sandbox ourselves so that result.json is still written.
    struct sigaction action = {};
    action.sa_handler = RequestStop;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    // On a Slurm node the job's CAIRN_JOB_ID is its Slurm job id.
    const char* slurm_job_id = std::getenv("SLURM_JOB_ID");
    absl::StatusOr<exec::JobStatus> status = exec::RunJobDirectory(
        *job_dir, exec::SandboxOptions(), slurm_job_id != nullptr ? slurm_job_id : "", &stop_requested);
    if (!status.ok()) exit_code = Fail(status.status());
  });
}

}  // namespace cairn::cli
