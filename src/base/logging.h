// Logging setup: configures spdlog's default logger once at start-up (in
// main); everywhere else just calls spdlog::info(...), spdlog::warn(...).
// Lines go to stderr and, optionally, are appended to a log file.
//
// Thread-safety: InitLogging is meant to be called once, before other
// threads log; logging itself (spdlog's *_mt sinks) is thread-safe.
//
// Usage:
//   RETURN_IF_ERROR(InitLogging(config.GetString("log_level").value_or("info"),
//                               data_dir + "/logs/cairn.log"));
//   spdlog::info("listening on {}", port);
#ifndef CAIRN_BASE_LOGGING_H_
#define CAIRN_BASE_LOGGING_H_

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "base/status.h"

namespace cairn {

// Parses "trace", "debug", "info", "warn"/"warning", "error", "critical",
// "off" (any case); kInvalidArgument otherwise.
absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(std::string_view level);

// Sets spdlog's default logger: stderr (+ `log_file`, appended; spdlog
// creates its directory) at `level`. kInvalidArgument for a bad level or a
// log file that cannot be opened (the previous logger stays in place).
absl::Status InitLogging(std::string_view level, const std::optional<std::string>& log_file = std::nullopt);

}  // namespace cairn

#endif  // CAIRN_BASE_LOGGING_H_
