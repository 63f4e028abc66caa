#include "pipeline/step_metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <span>

#include <fmt/format.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "tracking/tracking_store.h"

namespace cairn::pipeline {
namespace {

// MLflow's per-request limits (tracking/tracking_store.h).
constexpr size_t kBatchMetrics = tracking::kMaxMetricsPerBatch;
constexpr size_t kBatchParamsTags = tracking::kMaxParamsTagsPerBatch;
constexpr size_t kBatchEntities = tracking::kMaxEntitiesPerBatch;

// ValidateLogBatch checks a run id too; records are validated before they
// belong to one, so a fixed valid id stands in.
constexpr char kValidationRunId[] = "0";

// How much of an over-long line decides whether it was meant as a record.
constexpr size_t kHeadBytes = 64;

enum class Kind { kNone, kMetric, kParam, kTag };

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// The kind of a line that starts like a record: '{' then the key "metric",
// "param" or "tag" (whitespace allowed around). Decided on the first bytes
// only, so it also works on the start of an over-long line.
Kind RecordKind(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && IsSpace(line[i])) ++i;
  if (i >= line.size() || line[i] != '{') return Kind::kNone;
  ++i;
  while (i < line.size() && (IsSpace(line[i]) || line[i] == '\r' || line[i] == '\n')) ++i;
  std::string_view rest = line.substr(std::min(i, line.size()));
  if (rest.starts_with("\"metric\"")) return Kind::kMetric;
  if (rest.starts_with("\"param\"")) return Kind::kParam;
  if (rest.starts_with("\"tag\"")) return Kind::kTag;
  return Kind::kNone;
}

bool IsBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return IsSpace(c) || c == '\r'; });
}

std::string Clip(std::string_view s, size_t n = 80) {
  return s.size() <= n ? std::string(s) : fmt::format("{}...", s.substr(0, n));
}

// A param or tag value: strings as they are; numbers and booleans as their
// JSON text, since printing `"value": 0.1` is the natural thing to write.
absl::StatusOr<std::string> ScalarText(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  return absl::InvalidArgumentError(fmt::format("'value' must be a string, number or boolean, got {}", v.type_name()));
}

absl::StatusOr<double> MetricValue(const Json& obj, bool allow_non_finite) {
  auto it = obj.find("value");
  if (it == obj.end() || it->is_null()) return absl::InvalidArgumentError("missing required field 'value'");
  double v = 0;
  if (it->is_number()) {
    v = it->get<double>();
  } else if (it->is_string() && allow_non_finite) {
    ASSIGN_OR_RETURN(v, GetDouble(obj, "value"));
  } else {
    return absl::InvalidArgumentError(fmt::format("'value' must be a number, got {}", it->type_name()));
  }
  if (!allow_non_finite && !std::isfinite(v)) {
    return absl::InvalidArgumentError("'value' must be a finite number");
  }
  return v;
}

absl::Status CheckFields(const Json& obj, std::initializer_list<std::string_view> allowed) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      return absl::InvalidArgumentError(fmt::format("unknown field '{}'", Clip(it.key(), 40)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<StepRecords> SplitIntoBatches(StepRecords records) {
  std::vector<StepRecords> batches;
  size_t m = 0, p = 0, t = 0;
  while (m < records.metrics.size() || p < records.params.size() || t < records.tags.size()) {
    StepRecords b;
    size_t np = std::min(kBatchParamsTags, records.params.size() - p);
    size_t nt = std::min(kBatchParamsTags, records.tags.size() - t);
    size_t nm = std::min({kBatchMetrics, kBatchEntities - np - nt, records.metrics.size() - m});
    auto take = [](auto& from, size_t& pos, size_t n, auto& to) {
      to.assign(std::make_move_iterator(from.begin() + static_cast<ptrdiff_t>(pos)),
                std::make_move_iterator(from.begin() + static_cast<ptrdiff_t>(pos + n)));
      pos += n;
    };
    take(records.params, p, np, b.params);
    take(records.tags, t, nt, b.tags);
    take(records.metrics, m, nm, b.metrics);
    batches.push_back(std::move(b));
  }
  return batches;
}

StepRecordParser::StepRecordParser(StepRecordSource source, std::function<int64_t()> now_ms)
    : source_(source), now_ms_(std::move(now_ms)) {
  if (!now_ms_) now_ms_ = [] { return absl::ToUnixMillis(absl::Now()); };
}

void StepRecordParser::AddError(std::string message) {
  if (errors_kept_ >= kMaxRecordErrors) {
    ++records_.errors_omitted;
    return;
  }
  ++errors_kept_;
  records_.errors.push_back(fmt::format("line {}: {}", line_number_, message));
}

void StepRecordParser::Feed(std::string_view bytes) {
  while (!bytes.empty()) {
    if (at_line_start_) {
      ++line_number_;
      at_line_start_ = false;
    }
    const size_t nl = bytes.find('\n');
    const bool complete = nl != std::string_view::npos;
    std::string_view piece = bytes.substr(0, complete ? nl : bytes.size());
    bytes.remove_prefix(complete ? nl + 1 : bytes.size());
    if (discarding_) {
      discarding_ = !complete;
      at_line_start_ = complete;
      continue;
    }
    if (partial_.size() + piece.size() > kMaxRecordLineBytes) {
      // Judged on the line's first bytes only, wherever the input was cut.
      std::string head = partial_.substr(0, kHeadBytes);
      head.append(piece.substr(0, kHeadBytes - head.size()));
      if (RecordKind(head) != Kind::kNone || (source_ == StepRecordSource::kSdkRecordFile && !IsBlank(head))) {
        AddError(fmt::format("longer than {} bytes; skipped", kMaxRecordLineBytes));
      }
      partial_.clear();
      discarding_ = !complete;
      at_line_start_ = complete;
      continue;
    }
    if (!complete) {
      partial_.append(piece);
      continue;
    }
    at_line_start_ = true;
    if (partial_.empty()) {
      ParseLine(piece);
    } else {
      partial_.append(piece);
      ParseLine(partial_);
      partial_.clear();
    }
  }
}

void StepRecordParser::Finish() {
  if (!partial_.empty()) ParseLine(partial_);
  partial_.clear();
  discarding_ = false;
  at_line_start_ = true;
}

StepRecords StepRecordParser::Take() {
  StepRecords out = std::move(records_);
  records_ = StepRecords();
  return out;
}

void StepRecordParser::ParseLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const Kind kind = RecordKind(line);
  if (kind == Kind::kNone) {
    if (source_ == StepRecordSource::kSdkRecordFile && !IsBlank(line)) {
      AddError(fmt::format("not a metric, param or tag record: {}", Clip(line)));
    }
    return;
  }
  absl::StatusOr<Json> parsed = ParseJson(line);
  if (!parsed.ok()) {
    AddError(std::string(parsed.status().message()));  // "invalid JSON: ..."
    return;
  }
  const Json& obj = *parsed;
  if (!obj.is_object()) {  // "{..." that parsed as something else: cannot happen, but never trust a line
    AddError("not a JSON object");
    return;
  }
  const char* name_field = kind == Kind::kMetric ? "metric" : kind == Kind::kParam ? "param" : "tag";
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::string key, GetString(obj, name_field));
    if (kind == Kind::kMetric) {
      RETURN_IF_ERROR(CheckFields(obj, {"metric", "value", "step", "timestamp"}));
      tracking::Metric m;
      m.key = std::move(key);
      ASSIGN_OR_RETURN(m.value, MetricValue(obj, source_ == StepRecordSource::kSdkRecordFile));
      ASSIGN_OR_RETURN(std::optional<int64_t> step, GetOptionalInt(obj, "step"));
      ASSIGN_OR_RETURN(std::optional<int64_t> timestamp, GetOptionalInt(obj, "timestamp"));
      m.step = step.value_or(0);
      m.timestamp = timestamp ? *timestamp : now_ms_();
      RETURN_IF_ERROR(tracking::ValidateLogBatch(kValidationRunId, std::span<const tracking::Metric>(&m, 1), {}, {}));
      records_.metrics.push_back(std::move(m));
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(CheckFields(obj, {name_field, "value"}));
    auto value_it = obj.find("value");
    if (value_it == obj.end() || value_it->is_null()) return absl::InvalidArgumentError("missing required field 'value'");
    ASSIGN_OR_RETURN(std::string value, ScalarText(*value_it));
    tracking::Tag kv{std::move(key), std::move(value)};
    if (kind == Kind::kTag) {
      RETURN_IF_ERROR(tracking::ValidateLogBatch(kValidationRunId, {}, {}, std::span<const tracking::Tag>(&kv, 1)));
      records_.tags.push_back(std::move(kv));
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(tracking::ValidateLogBatch(kValidationRunId, {}, std::span<const tracking::Param>(&kv, 1), {}));
    auto [it, inserted] = param_values_.emplace(kv.key, kv.value);
    if (!inserted) {
      if (it->second == kv.value) return absl::OkStatus();  // logged again, unchanged: nothing new
      return absl::InvalidArgumentError(fmt::format("param '{}' was already logged with value '{}'; params cannot change",
                                                    Clip(kv.key, 40), Clip(it->second, 40)));
    }
    records_.params.push_back(std::move(kv));
    return absl::OkStatus();
  }();
  if (!status.ok()) AddError(std::string(status.message()));
}

absl::StatusOr<StepRecords> ParseSdkRecordFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    std::string message = fmt::format("cannot read SDK record file {}: {}", path, std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(message);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
    return absl::InternalError(message);
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return absl::InternalError(fmt::format("cannot stat {}: {}", path, std::strerror(errno)));
  // The file is written by code inside a sandbox: it may be anything.
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(fmt::format("SDK record file {} is not a regular file", path));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxSdkRecordFileBytes) {
    return absl::FailedPreconditionError(fmt::format("SDK record file {} has {} bytes, over the limit of {}", path,
                                                     st.st_size, kMaxSdkRecordFileBytes));
  }
  StepRecordParser parser(StepRecordSource::kSdkRecordFile);
  std::string buf(1 << 20, '\0');
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    }
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (total > kMaxSdkRecordFileBytes) {  // still being written to
      return absl::FailedPreconditionError(
          fmt::format("SDK record file {} grew over the limit of {} bytes", path, kMaxSdkRecordFileBytes));
    }
    parser.Feed(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  parser.Finish();
  return parser.Take();
}

}  // namespace cairn::pipeline
