// libFuzzer target for table profiles (data/profile.h). The input is fed as
// CSV and as NPY, whole and split in two at a point chosen by its first two
// bytes. Checks: nothing crashes or throws; errors are kInvalidArgument; the
// split never changes the result; every column accounts for every row; the
// profile survives ToJson -> dump -> parse -> FromJson -> ToJson unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/json.h"
#include "data/profile.h"

namespace {

absl::StatusOr<cairn::data::TableProfile> Run(std::string_view format, std::string_view a, std::string_view b) {
  auto profiler = cairn::data::TableProfiler::ForFormat(format);
  if (!profiler.ok()) std::abort();
  if (absl::Status s = (*profiler)->Append(a); !s.ok()) return s;
  if (absl::Status s = (*profiler)->Append(b); !s.ok()) return s;
  return (*profiler)->Finish();
}

void Check(std::string_view format, std::string_view input, size_t split) {
  auto whole = Run(format, input, {});
  auto parts = Run(format, input.substr(0, split), input.substr(split));
  if (whole.ok() != parts.ok()) std::abort();
  if (!whole.ok()) {
    if (whole.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    if (whole.status() != parts.status()) std::abort();
    return;
  }
  const std::string text = whole->ToJson().dump();  // throws on invalid UTF-8
  if (parts->ToJson().dump() != text) std::abort();
  if (whole->columns.size() > whole->column_count) std::abort();
  for (const auto& c : whole->columns) {
    if (c.count + c.missing != whole->rows) std::abort();
    if (c.infinite > c.count) std::abort();
  }
  auto json = cairn::ParseJson(text);
  if (!json.ok()) std::abort();
  auto back = cairn::data::TableProfile::FromJson(*json);
  if (!back.ok() || back->ToJson().dump() != text) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t split_seed = size_t{data[0]} | size_t{data[1]} << 8;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t split = input.empty() ? 0 : split_seed % (input.size() + 1);
  Check("csv", input, split);
  Check("npy", input, split);
  return 0;
}
