// libFuzzer target for Open Inference Protocol bodies that are all JSON (no
// Inference-Header-Content-Length): see oip_round_trip.h for what is checked.
// Values that came from JSON text are exact in both forms, NaNs included (the
// only NaN JSON can name is the canonical one).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "oip_round_trip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cairn::fuzz::CheckBody(std::string_view(reinterpret_cast<const char*>(data), size), std::nullopt,
                         /*json_exact=*/true);
  return 0;
}
