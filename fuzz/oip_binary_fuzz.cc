// libFuzzer target for Open Inference Protocol bodies with Triton's binary
// tensor data: the first two bytes (little-endian) give the
// Inference-Header-Content-Length, reduced modulo the rest's size + 1, and
// the rest is the body. See oip_round_trip.h for what is checked; values read
// as binary survive JSON encoding up to NaN payloads.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "oip_round_trip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t declared = data[0] | (static_cast<size_t>(data[1]) << 8);
  std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  cairn::fuzz::CheckBody(body, declared % (body.size() + 1), /*json_exact=*/false);
  return 0;
}
