// Control groups for sandboxed jobs: where this process may create child
// cgroups (CgroupLayout), and one job's set of them (JobCgroup), which limit
// its memory, processes and CPU share and measure what it used.
//
// Cgroups are created under the process's *own* cgroup in each hierarchy
// (the place a container or a Slurm step lets it write), for cgroup v1
// hierarchies and the v2 unified one alike; a controller bound to a v1
// hierarchy is used there, any other from v2 where the parent enables it.
// Whatever is missing or not writable is left out, and the sandbox falls back
// to rlimits for it (exec/sandbox.h).
//
// Thread-safety: CgroupLayout is an immutable value. A JobCgroup belongs to
// the thread running its job; its procs_files() may be written from a
// forked child.
//
// Usage:
//   CgroupLayout layout = CgroupLayout::Detect("");
//   ASSIGN_OR_RETURN(auto cg, JobCgroup::Create(layout, "cairn-job-1", {.memory_bytes = 1 << 30}));
//   // in the forked child, before exec: write(f.fd, "0", 1) for f in cg->procs_files()
//   ... wait for the job ...
//   CgroupUsage usage = cg->Usage();
//   cg.reset();  // kills what is left and removes the cgroups
#ifndef CAIRN_EXEC_CGROUP_H_
#define CAIRN_EXEC_CGROUP_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "base/status.h"

namespace cairn::exec {

enum class CgroupController { kMemory, kPids, kCpu, kCpuAcct };

class CgroupLayout {
 public:
  // Where one controller's job cgroups go: children of `parent_dir`.
  struct Place {
    std::string parent_dir;
    bool v2 = false;
  };

  // Reads /proc/self/mountinfo and /proc/self/cgroup. `mount_root` limits
  // the search to cgroup file systems mounted under it ("" = anywhere;
  // "none" = no cgroups at all). Controllers whose parent directory this
  // process cannot write are left out.
  static CgroupLayout Detect(const std::string& mount_root);
  // The same from the texts of those two files, without the writability
  // check (for tests).
  static CgroupLayout Parse(const std::string& mountinfo, const std::string& self_cgroup,
                            const std::string& mount_root);

  const std::optional<Place>& place(CgroupController c) const { return places_[static_cast<int>(c)]; }
  bool empty() const;
  // E.g. "memory: v1 /sys/fs/cgroup/memory/x; pids: none; ...".
  std::string Describe() const;

 private:
  std::optional<Place> places_[4];
};

struct CgroupLimits {
  uint64_t memory_bytes = 0;  // 0: no limit
  int max_processes = 0;      // 0: no limit
  int cpus = 0;               // CPU quota in whole CPUs; 0: no limit
};

struct CgroupUsage {
  std::optional<double> cpu_seconds;          // the whole job, from cpuacct / cpu.stat
  std::optional<uint64_t> peak_memory_bytes;  // from memory.max_usage_in_bytes / memory.peak
  uint64_t oom_kills = 0;                     // processes the kernel killed for the memory limit
  bool process_limit_hit = false;             // a fork was refused by the pids limit
};

class JobCgroup {
 public:
  // Creates `name` under each controller's place in `layout` and sets
  // `limits`. A controller whose cgroup cannot be made or limited is left
  // out (see limits_memory() etc.); only when none at all could be made is
  // it an error (kUnavailable). `name` must be a single path component.
  static absl::StatusOr<std::unique_ptr<JobCgroup>> Create(const CgroupLayout& layout, const std::string& name,
                                                           const CgroupLimits& limits);
  // Kills any process left in the cgroups and removes them.
  ~JobCgroup();
  JobCgroup(const JobCgroup&) = delete;
  JobCgroup& operator=(const JobCgroup&) = delete;

  // An open (O_WRONLY, close-on-exec) membership file, v1 "tasks" or v2
  // "cgroup.procs": "0" written to it by a single-threaded process (the
  // forked child) moves it into one of the job's cgroups.
  struct ProcsFile {
    int fd;
    // It holds the memory or pids limit. Joining the others (CPU quota and
    // accounting) may fail harmlessly, e.g. for a real-time process, which
    // cgroup v1 keeps out of a cpu cgroup without a real-time budget.
    bool required;
  };
  // One per hierarchy.
  const std::vector<ProcsFile>& procs_files() const { return procs_files_; }
  bool limits_memory() const { return memory_limited_; }
  bool limits_processes() const { return pids_limited_; }
  bool limits_cpus() const { return cpus_limited_; }
  bool measures_cpu() const { return !cpu_usage_file_.empty(); }

  // CPU seconds used so far (nullopt when no cgroup measures it).
  std::optional<double> CpuSeconds() const;
  CgroupUsage Usage() const;

  // SIGKILLs every process in the job's cgroups until none is left or
  // `patience` has passed; true when none is left.
  bool KillAll(absl::Duration patience);

  // The directories made, e.g. for a test to check they are gone.
  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  JobCgroup() = default;
  std::vector<std::string> Procs() const;

  std::vector<std::string> dirs_;  // every cgroup made, removed in the destructor
  std::vector<ProcsFile> procs_files_;
  std::string procs_file_;  // one cgroup.procs that lists every process of the job
  std::string kill_file_;   // v2 cgroup.kill, when present
  std::string cpu_usage_file_;
  bool cpu_usage_v2_ = false;
  std::string memory_dir_;
  bool memory_v2_ = false;
  std::string pids_dir_;
  bool memory_limited_ = false;
  bool pids_limited_ = false;
  bool cpus_limited_ = false;
};

// Job cgroups are named "cairn-<pid of the Cairn process>-<job id>".
std::string JobCgroupName(const std::string& job_id);

// Removes the job cgroups that processes which died without cleaning up
// (SIGKILLed, crashed) left under `layout`'s places: those named for a pid
// that no longer exists, older than a minute and with no process inside.
// Returns how many it removed.
int RemoveStaleJobCgroups(const CgroupLayout& layout);

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_CGROUP_H_
