// Error handling for all of Cairn: absl::Status / absl::StatusOr<T> plus the
// RETURN_IF_ERROR / ASSIGN_OR_RETURN macros, and an optional protocol-level
// error code carried as a payload (e.g. MLflow's "BAD_REQUEST"), so that the
// API edge can answer with the exact code a lower layer meant.
//
// Thread-safety: stateless; safe everywhere.
//
// Usage:
//   absl::StatusOr<Run> GetRun(std::string_view id) {
//     ASSIGN_OR_RETURN(auto row, LoadRow(id));
//     RETURN_IF_ERROR(Check(row));
//     return Run{...};
//   }
#ifndef CAIRN_BASE_STATUS_H_
#define CAIRN_BASE_STATUS_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <fmt/format.h>
// Note: Debian's Abseil has its own absl::string_view, distinct from
// std::string_view. Pass std::string (or const char*) to Abseil functions and
// build strings with fmt::format, not absl::StrCat.

#define CAIRN_STATUS_CONCAT_INNER_(a, b) a##b
#define CAIRN_STATUS_CONCAT_(a, b) CAIRN_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// when it is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status cairn_status_ = (expr);           \
    if (!cairn_status_.ok()) return cairn_status_;   \
  } while (0)

// `tmp` names a variable and `lhs` may be a declaration: neither can be
// parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define CAIRN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

// Evaluates `expr` (an absl::StatusOr<T>); on error returns its status, else
// assigns the value to `lhs` (which may be a declaration: `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  CAIRN_ASSIGN_OR_RETURN_IMPL_(CAIRN_STATUS_CONCAT_(cairn_statusor_, __LINE__), lhs, expr)

namespace cairn {

// The payload key under which a protocol error code travels with a Status.
inline constexpr std::string_view kErrorCodePayload = "cairn.dev/error-code";

// Returns `status` with a protocol error code attached (e.g. "BAD_REQUEST").
absl::Status WithErrorCode(absl::Status status, std::string_view code);

// The protocol error code attached to `status`, if any.
std::optional<std::string> ErrorCodeOf(const absl::Status& status);

// Prefixes the message of a non-OK status with `context: `; keeps code and payloads.
absl::Status Annotate(const absl::Status& status, std::string_view context);

}  // namespace cairn

// Lets fmt::format print Debian Abseil's own string_view (e.g. Status::message()).
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(s.data(), s.size()), ctx);
  }
};

#endif  // CAIRN_BASE_STATUS_H_
