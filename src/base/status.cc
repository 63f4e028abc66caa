#include "base/status.h"

#include <string>

namespace cairn {

absl::Status WithErrorCode(absl::Status status, std::string_view code) {
  status.SetPayload(std::string(kErrorCodePayload), absl::Cord(std::string(code)));
  return status;
}

std::optional<std::string> ErrorCodeOf(const absl::Status& status) {
  auto payload = status.GetPayload(std::string(kErrorCodePayload));
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

absl::Status Annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  std::string message(context);
  message += ": ";
  message += std::string(status.message());
  absl::Status out(status.code(), message);
  status.ForEachPayload(
      [&](absl::string_view key, const absl::Cord& value) { out.SetPayload(key, value); });
  return out;
}

}  // namespace cairn
