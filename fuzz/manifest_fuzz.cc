// libFuzzer target for dataset manifests (data/manifest.h): parsing arbitrary
// bytes never crashes; what is accepted is canonical (it serializes back to
// the same bytes) and every path in it is safe to materialize.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "data/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto m = cairn::data::DatasetManifest::Parse(text);
  if (!m.ok()) {
    if (m.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (m->Serialize() != text) std::abort();
  for (const auto& f : m->files) {
    if (!cairn::data::ValidateDatasetPath(f.path).ok()) std::abort();
  }
  return 0;
}
