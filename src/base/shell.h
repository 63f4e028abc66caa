// Quoting for POSIX shell command lines (sbatch scripts, popen in tests).
//
// Usage:
//   std::string cmd = "python3 " + ShellQuote(script) + " " + ShellQuote(dir);
#ifndef CAIRN_BASE_SHELL_H_
#define CAIRN_BASE_SHELL_H_

#include <string>
#include <string_view>

namespace cairn {

// `s` as one shell word: single-quoted, each ' written as '\''.
std::string ShellQuote(std::string_view s);

}  // namespace cairn

#endif  // CAIRN_BASE_SHELL_H_
