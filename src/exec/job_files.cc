#include "exec/job_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "base/env.h"
#include "base/ids.h"

namespace cairn::exec {
namespace {

constexpr int64_t kFormatVersion = 1;

absl::Status Invalid(std::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

// Durations travel as whole milliseconds; an infinite one as the largest int64.
int64_t DurationToMs(absl::Duration d) { return absl::ToInt64Milliseconds(d); }
absl::Duration MsToDuration(int64_t ms) {
  if (ms == std::numeric_limits<int64_t>::max()) return absl::InfiniteDuration();
  return absl::Milliseconds(ms);
}

absl::StatusOr<std::optional<uint64_t>> GetOptionalUint(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(std::optional<int64_t> v, GetOptionalInt(obj, field));
  if (!v.has_value()) return std::optional<uint64_t>();
  if (*v < 0) return Invalid(fmt::format("field '{}' must not be negative", field));
  return std::optional<uint64_t>(static_cast<uint64_t>(*v));
}

absl::StatusOr<std::optional<int>> GetOptionalSmallInt(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(std::optional<int64_t> v, GetOptionalInt(obj, field));
  if (!v.has_value()) return std::optional<int>();
  if (*v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max()) {
    return Invalid(fmt::format("field '{}' is out of range", field));
  }
  return std::optional<int>(static_cast<int>(*v));
}

Json MountsToJson(const std::vector<Mount>& mounts) {
  Json out = Json::array();
  for (const Mount& m : mounts) out.push_back({{"name", m.name}, {"host_path", m.host_path}});
  return out;
}

absl::StatusOr<std::vector<Mount>> MountsFromJson(const Json& json, std::string_view field) {
  ASSIGN_OR_RETURN(std::vector<Json> items, GetOptionalArray(json, field));
  std::vector<Mount> out;
  for (size_t i = 0; i < items.size(); ++i) {
    absl::StatusOr<Mount> m = [&]() -> absl::StatusOr<Mount> {
      Mount m;
      ASSIGN_OR_RETURN(m.name, GetString(items[i], "name"));
      ASSIGN_OR_RETURN(m.host_path, GetString(items[i], "host_path"));
      return m;
    }();
    if (!m.ok()) return Annotate(m.status(), fmt::format("{}[{}]", field, i));
    out.push_back(*std::move(m));
  }
  return out;
}

absl::StatusOr<Resources> ResourcesFromJson(const Json& json) {
  Resources r;
  if (json.is_null()) return r;
  if (!json.is_object()) return Invalid("field 'resources' must be an object");
  ASSIGN_OR_RETURN(std::optional<int> cpus, GetOptionalSmallInt(json, "cpus"));
  ASSIGN_OR_RETURN(std::optional<uint64_t> memory, GetOptionalUint(json, "memory_bytes"));
  ASSIGN_OR_RETURN(std::optional<int> gpus, GetOptionalSmallInt(json, "gpus"));
  ASSIGN_OR_RETURN(std::optional<int64_t> wall_ms, GetOptionalInt(json, "wall_timeout_ms"));
  ASSIGN_OR_RETURN(std::optional<int64_t> cpu_ms, GetOptionalInt(json, "cpu_time_ms"));
  ASSIGN_OR_RETURN(std::optional<int> procs, GetOptionalSmallInt(json, "max_processes"));
  ASSIGN_OR_RETURN(std::optional<uint64_t> output, GetOptionalUint(json, "max_output_bytes"));
  r.cpus = cpus.value_or(r.cpus);
  r.memory_bytes = memory.value_or(r.memory_bytes);
  r.gpus = gpus.value_or(r.gpus);
  if (wall_ms.has_value()) r.wall_timeout = MsToDuration(*wall_ms);
  if (cpu_ms.has_value()) r.cpu_time = MsToDuration(*cpu_ms);
  r.max_processes = procs.value_or(r.max_processes);
  r.max_output_bytes = output.value_or(r.max_output_bytes);
  return r;
}

absl::StatusOr<JobState> JobStateFromName(const std::string& name) {
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                     JobState::kCancelled}) {
    if (name == JobStateName(s)) return s;
  }
  return Invalid(fmt::format("field 'state' has unknown value '{}'", name));
}

absl::Status CheckVersion(const Json& json) {
  ASSIGN_OR_RETURN(std::optional<int64_t> version, GetOptionalInt(json, "version"));
  if (version.has_value() && *version != kFormatVersion) {
    return Invalid(fmt::format("unsupported format version {} (this build reads {})", *version, kFormatVersion));
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> ReadJsonFile(const std::string& path) {
  std::unique_ptr<Env> env = NewPosixEnv();
  ASSIGN_OR_RETURN(std::string text, env->ReadFileToString(path));
  absl::StatusOr<Json> json = ParseJson(text);
  if (!json.ok()) return Annotate(json.status(), path);
  return json;
}

absl::Status WriteJsonFile(const Json& json, const std::string& path, bool sync) {
  std::unique_ptr<Env> env = NewPosixEnv();
  if (sync) return env->WriteFileAtomic(path, json.dump() + "\n");
  const std::string tmp = fmt::format("{}.tmp-{}", path, NewRandomHex(8));
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env->NewWritableFile(tmp));
    RETURN_IF_ERROR(file->Append(json.dump() + "\n"));
    RETURN_IF_ERROR(file->Close());
    return env->RenameFile(tmp, path);
  }();
  if (!status.ok()) env->DeleteFile(tmp).IgnoreError();
  return status;
}

}  // namespace

Json JobSpecToJson(const JobSpec& spec) {
  const Resources& r = spec.resources;
  return Json{
      {"version", kFormatVersion},
      {"name", spec.name},
      {"argv", spec.argv},
      {"env", spec.env},
      {"code_dir", spec.code_dir},
      {"inputs", MountsToJson(spec.inputs)},
      {"outputs", MountsToJson(spec.outputs)},
      {"root_dir", spec.root_dir},
      {"network", spec.network},
      {"resources",
       {
           {"cpus", r.cpus},
           {"memory_bytes", r.memory_bytes},
           {"gpus", r.gpus},
           {"wall_timeout_ms", DurationToMs(r.wall_timeout)},
           {"cpu_time_ms", DurationToMs(r.cpu_time)},
           {"max_processes", r.max_processes},
           {"max_output_bytes", r.max_output_bytes},
       }},
      {"job_dir", spec.job_dir},
  };
}

absl::StatusOr<JobSpec> JobSpecFromJson(const Json& json) {
  if (!json.is_object()) return Invalid("job spec: expected a JSON object");
  absl::StatusOr<JobSpec> spec = [&]() -> absl::StatusOr<JobSpec> {
    RETURN_IF_ERROR(CheckVersion(json));
    JobSpec spec;
    ASSIGN_OR_RETURN(std::optional<std::string> name, GetOptionalString(json, "name"));
    spec.name = name.value_or("");
    ASSIGN_OR_RETURN(std::vector<Json> argv, GetOptionalArray(json, "argv"));
    for (size_t i = 0; i < argv.size(); ++i) {
      if (!argv[i].is_string()) return Invalid(fmt::format("field 'argv[{}]' must be a string", i));
      spec.argv.push_back(argv[i].get<std::string>());
    }
    if (auto it = json.find("env"); it != json.end() && !it->is_null()) {
      if (!it->is_object()) return Invalid("field 'env' must be an object");
      for (const auto& [key, value] : it->items()) {
        if (!value.is_string()) return Invalid(fmt::format("field 'env.{}' must be a string", key));
        spec.env[key] = value.get<std::string>();
      }
    }
    ASSIGN_OR_RETURN(std::optional<std::string> code_dir, GetOptionalString(json, "code_dir"));
    spec.code_dir = code_dir.value_or("");
    ASSIGN_OR_RETURN(spec.inputs, MountsFromJson(json, "inputs"));
    ASSIGN_OR_RETURN(spec.outputs, MountsFromJson(json, "outputs"));
    ASSIGN_OR_RETURN(std::optional<std::string> root_dir, GetOptionalString(json, "root_dir"));
    spec.root_dir = root_dir.value_or("");
    ASSIGN_OR_RETURN(std::optional<bool> network, GetOptionalBool(json, "network"));
    spec.network = network.value_or(false);
    absl::StatusOr<Resources> resources =
        ResourcesFromJson(json.contains("resources") ? json.at("resources") : Json());
    if (!resources.ok()) return Annotate(resources.status(), "resources");
    spec.resources = *resources;
    ASSIGN_OR_RETURN(spec.job_dir, GetString(json, "job_dir"));
    return spec;
  }();
  if (!spec.ok()) return Annotate(spec.status(), "job spec");
  return spec;
}

Json JobStatusToJson(const JobStatus& status) {
  Json out{
      {"version", kFormatVersion},
      {"state", JobStateName(status.state)},
      {"reason", status.reason},
      {"cpu_seconds", JsonDouble(status.cpu_seconds)},
      {"peak_memory_bytes", status.peak_memory_bytes},
      {"started_at_ms", status.started_at_ms},
      {"ended_at_ms", status.ended_at_ms},
  };
  if (status.exit_code.has_value()) out["exit_code"] = *status.exit_code;
  if (status.term_signal.has_value()) out["term_signal"] = *status.term_signal;
  return out;
}

absl::StatusOr<JobStatus> JobStatusFromJson(const Json& json) {
  if (!json.is_object()) return Invalid("job result: expected a JSON object");
  absl::StatusOr<JobStatus> status = [&]() -> absl::StatusOr<JobStatus> {
    RETURN_IF_ERROR(CheckVersion(json));
    JobStatus st;
    ASSIGN_OR_RETURN(std::string state, GetString(json, "state"));
    ASSIGN_OR_RETURN(st.state, JobStateFromName(state));
    ASSIGN_OR_RETURN(st.exit_code, GetOptionalSmallInt(json, "exit_code"));
    ASSIGN_OR_RETURN(st.term_signal, GetOptionalSmallInt(json, "term_signal"));
    ASSIGN_OR_RETURN(std::optional<std::string> reason, GetOptionalString(json, "reason"));
    st.reason = reason.value_or("");
    if (json.contains("cpu_seconds") && !json.at("cpu_seconds").is_null()) {
      ASSIGN_OR_RETURN(st.cpu_seconds, GetDouble(json, "cpu_seconds"));
    }
    ASSIGN_OR_RETURN(std::optional<uint64_t> peak, GetOptionalUint(json, "peak_memory_bytes"));
    st.peak_memory_bytes = peak.value_or(0);
    ASSIGN_OR_RETURN(std::optional<int64_t> started, GetOptionalInt(json, "started_at_ms"));
    st.started_at_ms = started.value_or(0);
    ASSIGN_OR_RETURN(std::optional<int64_t> ended, GetOptionalInt(json, "ended_at_ms"));
    st.ended_at_ms = ended.value_or(0);
    return st;
  }();
  if (!status.ok()) return Annotate(status.status(), "job result");
  return status;
}

absl::Status WriteJobSpec(const JobSpec& spec, const std::string& job_dir, bool sync) {
  return WriteJsonFile(JobSpecToJson(spec), JoinPath(job_dir, kJobSpecFile), sync);
}

absl::StatusOr<JobSpec> ReadJobSpec(const std::string& job_dir) {
  ASSIGN_OR_RETURN(Json json, ReadJsonFile(JoinPath(job_dir, kJobSpecFile)));
  return JobSpecFromJson(json);
}

absl::Status WriteJobResult(const JobStatus& status, const std::string& job_dir, bool sync) {
  return WriteJsonFile(JobStatusToJson(status), JoinPath(job_dir, kJobResultFile), sync);
}

absl::StatusOr<JobStatus> ReadJobResult(const std::string& job_dir) {
  ASSIGN_OR_RETURN(Json json, ReadJsonFile(JoinPath(job_dir, kJobResultFile)));
  return JobStatusFromJson(json);
}

absl::StatusOr<LogChunk> ReadJobLog(const std::string& job_dir, uint64_t offset, size_t max_bytes, bool job_final) {
  constexpr size_t kMaxLogRead = 16 << 20;
  LogChunk chunk;
  chunk.next_offset = offset;
  const std::string path = JoinPath(job_dir, kJobLogFile);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      chunk.finished = job_final;
      return chunk;
    }
    return absl::InternalError(fmt::format("opening {}: {}", path, std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(fmt::format("stat {}: {}", path, std::strerror(errno)));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const size_t want = static_cast<size_t>(std::min<uint64_t>(
      std::min<uint64_t>(max_bytes, kMaxLogRead), size > offset ? size - offset : 0));
  chunk.bytes.resize(want);
  size_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(fd, chunk.bytes.data() + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  chunk.bytes.resize(got);
  chunk.next_offset = offset + got;
  chunk.finished = job_final && chunk.next_offset >= size;
  return chunk;
}

}  // namespace cairn::exec
