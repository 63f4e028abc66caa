// SlurmCluster: a real, single-node Slurm cluster on localhost for tests —
// munged (own key and socket), slurmctld and slurmd as child processes, all
// state, logs and configuration under one temporary directory. Nothing under
// /etc is read or written: clients reach it through SLURM_CONF (env()).
//
// Each daemon runs in the foreground in its own process group; the
// destructor cancels the cluster's jobs, stops the groups (SIGTERM, then
// SIGKILL) and removes the directory. The daemons also get SIGTERM when the
// thread that started them ends (a crashed or killed test leaves no cluster
// behind), so start it from a thread that outlives its use (main).
//
// Thread-safety: Start and the destructor from one thread; Run, CancelAllJobs
// and the accessors may be called from any thread.
//
// Usage:
//   if (absl::Status s = SlurmCluster::CheckAvailable(); !s.ok()) GTEST_SKIP() << s.message();
//   ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlurmCluster> cluster, SlurmCluster::Start());
//   CommandResult r = cluster->Run({"squeue", "-h"});
//   options.env = cluster->env();   // {"SLURM_CONF": ".../slurm.conf"}
#ifndef CAIRN_TESTS_SUPPORT_SLURM_CLUSTER_H_
#define CAIRN_TESTS_SUPPORT_SLURM_CLUSTER_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/server_process.h"

namespace cairn::testing {

class SlurmCluster {
 public:
  // OK when Slurm (slurmctld, slurmd, sbatch, scontrol, ...) and munged are
  // on PATH and this process runs as root (slurmd must be root to start
  // jobs); otherwise kFailedPrecondition saying what is missing, for
  // GTEST_SKIP.
  static absl::Status CheckAvailable();

  // Starts the daemons and returns once `sinfo` shows the node idle.
  // kFailedPrecondition as CheckAvailable; kUnavailable (with the daemons'
  // log tails) when the cluster does not come up. On failure everything
  // started is stopped again.
  static absl::StatusOr<std::unique_ptr<SlurmCluster>> Start();

  ~SlurmCluster();
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;

  // The variables Slurm's clients need to reach this cluster (SLURM_CONF).
  const std::map<std::string, std::string>& env() const { return env_; }
  // The temporary directory holding slurm.conf, state, spool and logs.
  const std::string& dir() const { return dir_; }
  // The only partition; also the default one.
  const std::string& partition() const { return partition_; }
  const std::string& node_name() const { return node_name_; }
  int cpus() const { return cpus_; }
  uint64_t memory_mib() const { return memory_mib_; }

  // Runs a Slurm client (args[0] looked up on PATH) against this cluster;
  // the output holds stdout and stderr together.
  CommandResult Run(const std::vector<std::string>& args) const;

  // Cancels every job of the cluster and waits (up to 30 s) until none is
  // left in the queue: a clean slate between tests.
  absl::Status CancelAllJobs() const;

  // The last lines of each daemon's log, for failure messages.
  std::string LogTails() const;

 private:
  SlurmCluster() = default;
  absl::Status Launch();
  absl::Status WaitUntilIdle();
  void Stop();

  std::string dir_;
  std::string partition_ = "cairn";
  std::string node_name_;
  int cpus_ = 1;
  uint64_t memory_mib_ = 0;
  std::map<std::string, std::string> env_;
  // Daemons in start order; each leads its own process group.
  std::vector<pid_t> daemons_;
};

}  // namespace cairn::testing

#endif  // CAIRN_TESTS_SUPPORT_SLURM_CLUSTER_H_
