// Plain-text tables for human-readable CLI output.
//
// Usage:
//   Table t({"RUN ID", "NAME", "STATUS"});
//   t.AddRow({id, name, status});
//   std::cout << t.Render();
#ifndef CAIRN_CLI_TABLE_H_
#define CAIRN_CLI_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace cairn::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  // Columns padded to their widest cell (cells over 60 characters are cut with "…").
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "2026-11-21 22:18:17" (UTC) from unix milliseconds; "-" for 0.
std::string FormatTime(int64_t unix_ms);
// "1.5 MiB" etc.
std::string FormatBytes(uint64_t bytes);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_TABLE_H_
