// libFuzzer target for pipeline specs (pipeline/spec.h) and cron schedules
// (pipeline/cron.h): any bytes never crash, hang or throw. Errors are
// kInvalidArgument and point into the file; an accepted spec orders every
// step after its dependencies, survives param overrides, and its JSON dumps
// (valid UTF-8) and reads back to the same JSON. The first line is also
// tried as a cron expression, whose next time is a later whole minute.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "pipeline/cron.h"
#include "pipeline/spec.h"

namespace {

using cairn::Json;
namespace pipeline = cairn::pipeline;

void Check(bool ok) {
  if (!ok) std::abort();
}

// Status messages reach JSON bodies: they must dump.
void CheckError(const absl::Status& s, std::string_view prefix) {
  Check(s.code() == absl::StatusCode::kInvalidArgument);
  const std::string message(s.message());
  Check(message.compare(0, prefix.size(), prefix) == 0);
  try {
    (void)Json(message).dump();
  } catch (const Json::exception&) {
    std::abort();
  }
}

void CheckCron(std::string_view text, uint64_t seed) {
  absl::StatusOr<pipeline::CronSchedule> cron = pipeline::CronSchedule::Parse(text);
  if (!cron.ok()) {
    CheckError(cron.status(), "");
    return;
  }
  const absl::Time starts[] = {absl::UnixEpoch(), absl::FromUnixSeconds(1709164800),  // 2024-02-29
                               absl::FromUnixSeconds(static_cast<int64_t>(seed % (1ull << 36))), absl::InfinitePast()};
  for (absl::Time t : starts) {
    const absl::Time next = cron->Next(t);
    Check(next > t);
    if (next != absl::InfiniteFuture()) {
      Check(absl::ToUnixSeconds(next) % 60 == 0);
      Check(cron->Next(next) > next);
    }
  }
}

// Every step after its dependencies; every step once.
void CheckOrder(const pipeline::PipelineSpec& spec) {
  const std::vector<std::string> order = pipeline::TopologicalOrder(spec);
  Check(order.size() == spec.steps.size());
  absl::flat_hash_map<std::string, size_t> position;
  for (size_t i = 0; i < order.size(); ++i) Check(position.emplace(order[i], i).second);
  for (const pipeline::StepSpec& step : spec.steps) {
    auto self = position.find(step.name);
    Check(self != position.end());
    for (const std::string& dep : pipeline::Dependencies(step)) {
      auto it = position.find(dep);
      Check(it != position.end() && it->second < self->second);
    }
  }
  const std::vector<std::string> wanted = pipeline::StepWithAncestors(spec, spec.steps.back().name);
  Check(!wanted.empty() && wanted.back() == spec.steps.back().name);
}

void CheckJson(const pipeline::PipelineSpec& spec) {
  const Json json = pipeline::PipelineToJson(spec);
  try {
    (void)json.dump();
  } catch (const Json::exception&) {
    std::abort();
  }
  absl::StatusOr<pipeline::PipelineSpec> back = pipeline::PipelineFromJson(json);
  Check(back.ok());
  Check(pipeline::PipelineToJson(*back) == json);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  uint64_t seed = 0;
  for (size_t i = 0; i < size && i < 8; ++i) seed = seed << 8 | data[i];
  CheckCron(text.substr(0, text.find('\n')), seed);

  absl::StatusOr<pipeline::PipelineSpec> spec = pipeline::ParsePipelineSpec(text, "fuzz.yaml");
  if (!spec.ok()) {
    CheckError(spec.status(), "fuzz.yaml:");
    return 0;
  }
  Check(!spec->steps.empty());
  CheckOrder(*spec);
  CheckJson(*spec);
  if (!spec->triggers.cron.empty()) CheckCron(spec->triggers.cron, seed);

  // Overrides: YAML comment lines "#=k=v" of the input, then every param of
  // the first step by both forms.
  std::vector<std::string> overrides;
  size_t start = 0;
  while (start < text.size() && overrides.size() < 8) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    if (line.starts_with("#=")) overrides.emplace_back(line.substr(2));
    start = end + 1;
  }
  pipeline::PipelineSpec copy = *spec;
  absl::Status applied = pipeline::ApplyParamOverrides(copy, overrides);
  if (!applied.ok()) {
    CheckError(applied, "");
    Check(pipeline::PipelineToJson(copy) == pipeline::PipelineToJson(*spec));  // all or nothing
  }
  std::vector<std::string> own;
  for (const auto& [name, value] : spec->steps[0].params) {
    own.push_back(name + "=" + value + "x");
    own.push_back(spec->steps[0].name + "." + name + "=$${" + name + "}");
  }
  applied = pipeline::ApplyParamOverrides(copy, own);
  if (!applied.ok()) CheckError(applied, "");  // e.g. a program name made empty
  CheckOrder(copy);
  CheckJson(copy);
  return 0;
}
