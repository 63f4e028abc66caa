// Dataset upload bodies and Range headers, as a client may send them.
// Properties: the frame reader never crashes, only ever fails with
// kInvalidArgument, and reads back exactly what EncodeChunkFrame wrote; a
// parsed byte range always lies inside the file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "api/data_api.h"

namespace {

void CheckFrames(std::string_view input) {
  cairn::api::StringBody body(input);
  std::string reencoded;
  absl::Status s = cairn::api::ReadChunkFrames(body, 1 << 16,
                                               [&](const cairn::Digest& d, std::string_view data) {
                                                 reencoded += cairn::api::EncodeChunkFrame(d, data);
                                                 return absl::OkStatus();
                                               });
  if (s.ok()) {
    if (reencoded != input) __builtin_trap();  // a clean parse consumes the body exactly
  } else if (s.code() != absl::StatusCode::kInvalidArgument) {
    __builtin_trap();
  } else if (input.substr(0, reencoded.size()) != reencoded) {
    __builtin_trap();  // frames before the bad one were read as sent
  }
}

void CheckRange(std::string_view input) {
  if (input.size() < 8) return;
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size = (size << 8) | static_cast<uint8_t>(input[i]);
  size >>= 16;  // up to 2^48
  auto r = cairn::api::ParseByteRange(input.substr(8), size);
  if (r.ok()) {
    if (!(r->first < r->second && r->second <= size)) __builtin_trap();
  } else if (r.status().code() != absl::StatusCode::kInvalidArgument &&
             r.status().code() != absl::StatusCode::kOutOfRange) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckFrames(input);
  CheckRange(input);
  return 0;
}
