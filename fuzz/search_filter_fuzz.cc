// libFuzzer target for the search grammar (tracking/search_filter.h): the
// input is used as a runs filter, an experiments filter and as order_by
// entries (split on '\n'). Parsing and compiling must never crash, and every
// rejection must be kInvalidArgument.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tracking/search_filter.h"

namespace {

using cairn::tracking::SqlDialect;
using cairn::tracking::SqlFragment;

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckRejection(const absl::Status& status) {
  Check(status.ok() || status.code() == absl::StatusCode::kInvalidArgument);
}

// The number of `?` placeholders must equal the number of parameters.
void CheckFragment(const SqlFragment& f) {
  size_t marks = 0;
  for (char c : f.sql) marks += c == '?';
  Check(marks == f.params.size());
  Check(!f.sql.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  using namespace cairn::tracking;

  for (SqlDialect dialect : {SqlDialect::kSqlite, SqlDialect::kPostgres}) {
    auto run_filter = ParseRunFilter(input);
    CheckRejection(run_filter.status());
    if (run_filter.ok()) {
      auto sql = RunFilterToSql(*run_filter, dialect);
      Check(sql.ok());  // a parsed filter always compiles
      CheckFragment(*sql);
    }
    auto experiment_filter = ParseExperimentFilter(input);
    CheckRejection(experiment_filter.status());
    if (experiment_filter.ok()) {
      auto sql = ExperimentFilterToSql(*experiment_filter, dialect);
      Check(sql.ok());
      CheckFragment(*sql);
    }

    std::vector<std::string> order_by;
    size_t start = 0;
    while (start <= input.size() && order_by.size() < 8) {
      size_t end = input.find('\n', start);
      if (end == std::string_view::npos) end = input.size();
      order_by.emplace_back(input.substr(start, end - start));
      start = end + 1;
    }
    auto run_order = RunOrderByToSql(order_by, dialect);
    CheckRejection(run_order.status());
    if (run_order.ok()) CheckFragment(*run_order);
    auto experiment_order = ExperimentOrderByToSql(order_by, dialect);
    CheckRejection(experiment_order.status());
    if (experiment_order.ok()) CheckFragment(*experiment_order);
  }
  return 0;
}
