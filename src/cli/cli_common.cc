#include "cli/cli_common.h"

#include "cli/transport.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace cairn::cli {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string JsonStr(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

int64_t JsonInt(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_unsigned()) return static_cast<int64_t>(it->get<uint64_t>());
  if (it->is_string()) return std::atoll(it->get<std::string>().c_str());
  return 0;
}

std::string FormatValue(const Json& v) {
  if (v.is_number_float()) return fmt::format("{:.6g}", v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

void PrintJson(const Json& j) { std::printf("%s\n", j.dump(2).c_str()); }

absl::StatusOr<double> ParseFraction(std::string_view key, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !(value >= 0 && value <= 1)) {
    return absl::InvalidArgumentError(fmt::format("{} must be a number from 0 to 1, got '{}'", key, text));
  }
  return value;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "cairn: error: %s\n", std::string(s.message()).c_str());
  return 1;
}

void WithTransport(const GlobalOptions& g, int& exit_code, const std::function<absl::Status(Transport&)>& fn) {
  auto t = Transport::Connect({.url = g.url, .data_dir = g.data_dir});
  if (!t.ok()) {
    exit_code = Fail(t.status());
    return;
  }
  absl::Status s = fn(**t);
  if (!s.ok()) exit_code = Fail(s);
}

sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return stop_signals;
}

int WaitForStopSignal(const sigset_t& stop_signals) {
  int sig = 0;
  sigwait(&stop_signals, &sig);
  return sig;
}

}  // namespace cairn::cli
