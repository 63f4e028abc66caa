// Pieces shared by the CLI's command files: global options and small JSON
// and output helpers.
//
// Thread-safety: plain functions; the CLI runs one command at a time.
#ifndef CAIRN_CLI_CLI_COMMON_H_
#define CAIRN_CLI_CLI_COMMON_H_

#include <signal.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/status.h"

namespace cairn::cli {

struct GlobalOptions {
  std::string url;       // --url / CAIRN_URL
  std::string data_dir;  // --data-dir / CAIRN_HOME
  bool json = false;     // --json
};

std::string EnvOr(const char* name, const std::string& fallback);
// A field as text ("" when absent; non-strings as JSON).
std::string JsonStr(const Json& j, const char* key);
// An integer field (also from a string); 0 when absent.
int64_t JsonInt(const Json& j, const char* key);
std::string FormatValue(const Json& v);
void PrintJson(const Json& j);
// Prints "cairn: error: MESSAGE" to stderr; returns the exit code 1.
int Fail(const absl::Status& s);

// A setting that must be a number from 0 to 1 (e.g. a sampling rate);
// kInvalidArgument naming `key` otherwise.
absl::StatusOr<double> ParseFraction(std::string_view key, const std::string& text);

// For the long-running commands (server, serve): blocks SIGINT and SIGTERM
// (call before any thread starts, so every thread inherits the mask and
// WaitForStopSignal is the only receiver) and ignores SIGPIPE.
sigset_t BlockStopSignals();
// Waits for one of `stop_signals`; returns its number.
int WaitForStopSignal(const sigset_t& stop_signals);

class Transport;
// Connects to the server or data directory `g` names and runs `fn` with it;
// a failure (connecting, or `fn`'s) is printed and sets `exit_code` to 1.
void WithTransport(const GlobalOptions& g, int& exit_code, const std::function<absl::Status(Transport&)>& fn);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_CLI_COMMON_H_
