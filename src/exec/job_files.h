// The files a job keeps in its job directory, so that whoever started a job
// (this process, a restarted server, a Slurm node) can read what happened:
//   spec.json    the JobSpec (written by the submitter before the job starts)
//   output.log   stdout and stderr, interleaved, appended while it runs
//   result.json  the final JobStatus, written atomically once it ends
// Formats: docs/executors.md.
//
// Thread-safety: free functions, no shared state.
#ifndef CAIRN_EXEC_JOB_FILES_H_
#define CAIRN_EXEC_JOB_FILES_H_

#include <string>

#include "base/json.h"
#include "exec/executor.h"

namespace cairn::exec {

inline constexpr char kJobSpecFile[] = "spec.json";
inline constexpr char kJobLogFile[] = "output.log";
inline constexpr char kJobResultFile[] = "result.json";

Json JobSpecToJson(const JobSpec& spec);
// kInvalidArgument naming the field for anything malformed.
absl::StatusOr<JobSpec> JobSpecFromJson(const Json& json);
Json JobStatusToJson(const JobStatus& status);
absl::StatusOr<JobStatus> JobStatusFromJson(const Json& json);

// Write to a temp file, fsync, rename: a reader sees the whole file or none.
// `sync` false skips the fsyncs (readers still see the whole file or none,
// but a machine crash may lose it): for jobs that die with the machine
// anyway, where an fsync on a busy disk would cost more than starting the
// job (the local sandbox).
absl::Status WriteJobSpec(const JobSpec& spec, const std::string& job_dir, bool sync = true);
absl::StatusOr<JobSpec> ReadJobSpec(const std::string& job_dir);
absl::Status WriteJobResult(const JobStatus& status, const std::string& job_dir, bool sync = true);
// kNotFound while the job has not ended.
absl::StatusOr<JobStatus> ReadJobResult(const std::string& job_dir);

// Up to `max_bytes` (at most 16 MiB) of job_dir/output.log from `offset`.
// `job_final`: whether the job had ended before this call (read it first:
// then the log is complete, and `finished` is set once the read reaches its
// end). A log not created yet reads as empty.
absl::StatusOr<LogChunk> ReadJobLog(const std::string& job_dir, uint64_t offset, size_t max_bytes, bool job_final);

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_JOB_FILES_H_
