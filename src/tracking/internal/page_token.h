// Page tokens: opaque to clients; base64 of {"offset": N}, like MLflow's.
#ifndef CAIRN_TRACKING_INTERNAL_PAGE_TOKEN_H_
#define CAIRN_TRACKING_INTERNAL_PAGE_TOKEN_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace cairn::tracking::internal {

std::string EncodePageToken(int64_t offset);
// "" decodes to 0; anything malformed is kInvalidArgument.
absl::StatusOr<int64_t> DecodePageToken(std::string_view token);

}  // namespace cairn::tracking::internal

#endif  // CAIRN_TRACKING_INTERNAL_PAGE_TOKEN_H_
