#include "base/logging.h"

#include <memory>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace cairn {

absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(std::string_view level) {
  std::string l(level);
  for (char& c : l) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (l == "trace") return spdlog::level::trace;
  if (l == "debug") return spdlog::level::debug;
  if (l == "info") return spdlog::level::info;
  if (l == "warn" || l == "warning") return spdlog::level::warn;
  if (l == "error") return spdlog::level::err;
  if (l == "critical") return spdlog::level::critical;
  if (l == "off") return spdlog::level::off;
  return absl::InvalidArgumentError(fmt::format(
      "invalid log level '{}': expected trace, debug, info, warn, error, critical or off", level));
}

absl::Status InitLogging(std::string_view level, const std::optional<std::string>& log_file) {
  ASSIGN_OR_RETURN(spdlog::level::level_enum lvl, ParseLogLevel(level));
  // spdlog throws spdlog_ex (e.g. the file cannot be opened): convert here.
  try {
    std::vector<spdlog::sink_ptr> sinks;
    sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    if (log_file) sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(*log_file, /*truncate=*/false));
    auto logger = std::make_shared<spdlog::logger>("cairn", sinks.begin(), sinks.end());
    logger->set_level(lvl);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%L%$ [%t] %v");
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(std::move(logger));
    return absl::OkStatus();
  } catch (const spdlog::spdlog_ex& e) {
    return absl::InvalidArgumentError(
        fmt::format("cannot set up logging to {}: {}", log_file.value_or("stderr"), e.what()));
  }
}

}  // namespace cairn
