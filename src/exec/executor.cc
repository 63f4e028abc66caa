#include "exec/executor.h"

#include <algorithm>
#include <set>
#include <string_view>

#include <fmt/format.h>

namespace cairn::exec {
namespace {

constexpr size_t kMaxMountName = 64;
constexpr size_t kMaxJobName = 256;

absl::Status Invalid(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("job spec: {} {}", field, why));
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

bool IsMountNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}

bool IsEnvName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// Absolute, and safe to hand to a shell script or a mount call as is.
absl::Status CheckHostPath(std::string_view field, const std::string& path) {
  if (path.empty() || path[0] != '/') return Invalid(field, fmt::format("must be an absolute path, got '{}'", path));
  for (char c : path) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return Invalid(field, "contains a control character");
  }
  return absl::OkStatus();
}

absl::Status CheckMounts(std::string_view list, const std::vector<Mount>& mounts) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < mounts.size(); ++i) {
    const Mount& m = mounts[i];
    const std::string field = fmt::format("{}[{}]", list, i);
    if (m.name.empty() || m.name.size() > kMaxMountName || m.name == "." || m.name == ".." ||
        !std::all_of(m.name.begin(), m.name.end(), IsMountNameChar)) {
      return Invalid(field + ".name", fmt::format("must match [A-Za-z0-9_.-]{{1,64}}, got '{}'", m.name));
    }
    if (!seen.insert(m.name).second) return Invalid(field + ".name", fmt::format("'{}' is used twice", m.name));
    RETURN_IF_ERROR(CheckHostPath(field + ".host_path", m.host_path));
  }
  return absl::OkStatus();
}

}  // namespace

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return "QUEUED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kSucceeded:
      return "SUCCEEDED";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

absl::Status ValidateJobSpec(const JobSpec& spec) {
  if (spec.name.size() > kMaxJobName) return Invalid("name", "is longer than 256 bytes");
  for (char c : spec.name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return Invalid("name", "contains a control character");
  }
  if (spec.argv.empty()) return Invalid("argv", "is empty");
  if (spec.argv[0].empty()) return Invalid("argv[0]", "is empty");
  for (size_t i = 0; i < spec.argv.size(); ++i) {
    if (HasNul(spec.argv[i])) return Invalid(fmt::format("argv[{}]", i), "contains a NUL byte");
  }
  for (const auto& [name, value] : spec.env) {
    if (!IsEnvName(name)) return Invalid("env", fmt::format("name '{}' is not a valid variable name", name));
    if (name == "CAIRN_JOB_ID" || name == "CAIRN_OUT") {
      return Invalid("env", fmt::format("'{}' is set by the executor", name));
    }
    if (HasNul(value)) return Invalid(fmt::format("env[{}]", name), "contains a NUL byte");
  }
  if (!spec.code_dir.empty()) RETURN_IF_ERROR(CheckHostPath("code_dir", spec.code_dir));
  if (!spec.root_dir.empty()) RETURN_IF_ERROR(CheckHostPath("root_dir", spec.root_dir));
  RETURN_IF_ERROR(CheckHostPath("job_dir", spec.job_dir));
  RETURN_IF_ERROR(CheckMounts("inputs", spec.inputs));
  RETURN_IF_ERROR(CheckMounts("outputs", spec.outputs));

  const Resources& r = spec.resources;
  if (r.cpus < 1) return Invalid("resources.cpus", "must be at least 1");
  if (r.gpus < 0) return Invalid("resources.gpus", "must not be negative");
  if (r.wall_timeout <= absl::ZeroDuration()) return Invalid("resources.wall_timeout", "must be positive");
  if (r.cpu_time < absl::ZeroDuration()) return Invalid("resources.cpu_time", "must not be negative");
  if (r.max_processes < 1) return Invalid("resources.max_processes", "must be at least 1");
  if (r.max_output_bytes == 0) return Invalid("resources.max_output_bytes", "must be positive");
  return absl::OkStatus();
}

}  // namespace cairn::exec
