// Table profiles: the schema and per-column statistics of a tabular file
// (CSV, TSV, NumPy .npy) in a dataset commit. Profiles are computed while a
// file is committed, shown by `cairn data show`, and serve later as the
// baseline for drift monitoring. JSON format, sketch and error bounds:
// docs/data-profiles.md.
//
// A TableProfiler is fed a file's bytes in arbitrary pieces (its chunks, in
// order) and keeps bounded memory whatever the file's size: no rows are
// stored, only per-column running moments, a KLL quantile sketch and a
// bounded Space-Saving table of frequent values, for at most
// kMaxProfiledColumns columns, with each field looked at through its first
// kMaxFieldBytes bytes.
//
// Errors: malformed input is kInvalidArgument naming the line/row and column
// (CSV) or the header field (NPY); the first error is sticky. Nothing in this
// module throws.
//
// Thread-safety: TableProfiler and QuantileSketch are not thread-safe (one
// thread at a time); profiles are plain values.
//
// Usage:
//   if (IsTabularPath(path)) {
//     ASSIGN_OR_RETURN(std::unique_ptr<TableProfiler> profiler, TableProfiler::ForPath(path));
//     for (std::string_view chunk : chunks) RETURN_IF_ERROR(profiler->Append(chunk));
//     ASSIGN_OR_RETURN(TableProfile profile, profiler->Finish());
//     std::string stored = profile.ToJson().dump();
//   }
#ifndef CAIRN_DATA_PROFILE_H_
#define CAIRN_DATA_PROFILE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/status.h"

namespace cairn::data {

// True for paths ending in .csv, .tsv or .npy (ASCII case-insensitive).
bool IsTabularPath(std::string_view path);

// Columns past this many are counted (TableProfile::column_count) but not
// profiled: width, not length, is what would otherwise make memory unbounded.
inline constexpr size_t kMaxProfiledColumns = 1024;
// A CSV field is classified from its first this many bytes (a longer one is a
// string); column names are cut to this length.
inline constexpr size_t kMaxFieldBytes = 1024;
// Frequent values: tracked with a Space-Saving table of this capacity per
// column, of which the top kTopValues are reported; values are cut to
// kMaxTopValueBytes bytes.
inline constexpr size_t kTopValueCapacity = 256;
inline constexpr size_t kTopValues = 20;
inline constexpr size_t kMaxTopValueBytes = 128;

// The quantiles every numeric column reports, in this order (p1 ... p99).
inline constexpr std::array<double, 7> kProfileQuantiles = {0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99};

// A KLL quantile sketch (Karnin, Lang, Liberty, FOCS 2016) over finite
// doubles: mergeable and serializable, retaining O(k) values however many are
// added. With the default k = 200 the rank of a returned quantile is within
// about ±1.65% of n of the requested rank with 99% confidence (see
// docs/data-profiles.md). The compaction coin is a fixed-seed PRNG, so a
// given input sequence always gives the same sketch.
class QuantileSketch {
 public:
  static constexpr int kDefaultK = 200;
  explicit QuantileSketch(int k = kDefaultK);

  // REQUIRES: std::isfinite(value).
  void Add(double value);
  // Adds everything `other` summarized; `other` may have a different k (the
  // result keeps this sketch's k).
  void Merge(const QuantileSketch& other);

  uint64_t count() const { return n_; }
  int k() const { return k_; }
  // Values held (the memory bound): at most about 3k + log2(n / k).
  size_t retained() const;
  // The value at normalized rank `q` in [0, 1] (clamped): the smallest held
  // value whose weighted rank reaches q * count(). REQUIRES: count() > 0.
  double Quantile(double q) const;

  // {"k": K, "n": N, "levels": [[v, ...], ...]}: levels[h] holds values of
  // weight 2^h, so N = sum(len(levels[h]) * 2^h).
  Json ToJson() const;
  // kInvalidArgument unless `json` is a consistent sketch.
  static absl::StatusOr<QuantileSketch> FromJson(const Json& json);

 private:
  size_t Capacity(size_t level) const;
  void Grow();
  void Compress();

  int k_;
  uint64_t n_ = 0;
  size_t size_ = 0;      // values held over all levels
  size_t max_size_ = 0;  // compress when size_ reaches this
  std::vector<std::vector<double>> levels_;
  uint64_t rng_;  // xorshift64 state for the compaction coin
};

// A frequent value of a column with its count. When a column's top values
// are not exact, `count` may overestimate the true count by at most
// ColumnProfile::top_values_error.
struct TopValue {
  std::string value;
  uint64_t count = 0;
  bool operator==(const TopValue&) const = default;
};

struct ColumnProfile {
  std::string name;  // CSV header field, or "0", "1", ... for .npy
  // "integer", "float", "boolean", "string", or "empty" (only missing values).
  std::string type;
  uint64_t count = 0;     // values present (not missing), infinite ones included
  uint64_t missing = 0;   // empty, NA, N/A, NaN, null, None; NaN in .npy floats
  uint64_t infinite = 0;  // +-inf floats: counted, but left out of every statistic
  // Numeric and boolean columns (booleans as 0/1); absent for string and
  // empty columns. `stddev` is the sample standard deviation (n - 1), 0 for a
  // single value.
  std::optional<double> min, max, mean, stddev;
  // Integer and float columns: kProfileQuantiles from `sketch`.
  std::optional<std::array<double, kProfileQuantiles.size()>> quantiles;
  std::optional<QuantileSketch> sketch;
  // String and boolean columns, and integer columns with at most
  // kTopValueCapacity distinct values: the most frequent values, most frequent
  // first (ties by value), at most kTopValues.
  std::vector<TopValue> top_values;
  // True when every count in top_values is exact; otherwise each may be too
  // high by at most top_values_error (the Space-Saving bound).
  bool top_values_exact = true;
  uint64_t top_values_error = 0;
  // The number of distinct values, when at most kTopValueCapacity.
  std::optional<uint64_t> distinct;
};

struct TableProfile {
  std::string format;          // "csv", "tsv" or "npy"
  uint64_t rows = 0;           // data rows (CSV: after the header)
  uint64_t column_count = 0;   // all columns of the file
  std::vector<ColumnProfile> columns;  // the first min(column_count, kMaxProfiledColumns)

  Json ToJson() const;
  // kInvalidArgument (naming the field) unless `json` is a valid profile.
  static absl::StatusOr<TableProfile> FromJson(const Json& json);
};

// Profiles one file from its bytes. Created per file; not reusable.
class TableProfiler {
 public:
  // The profiler for `path`'s format (by extension, see IsTabularPath);
  // kInvalidArgument if the path is not tabular.
  static absl::StatusOr<std::unique_ptr<TableProfiler>> ForPath(std::string_view path);
  // For a format name: "csv", "tsv" or "npy".
  static absl::StatusOr<std::unique_ptr<TableProfiler>> ForFormat(std::string_view format);

  virtual ~TableProfiler() = default;
  TableProfiler(const TableProfiler&) = delete;
  TableProfiler& operator=(const TableProfiler&) = delete;

  // Feeds the next bytes of the file (any split). kInvalidArgument as soon as
  // the data is known to be malformed; after an error, every call returns it.
  virtual absl::Status Append(std::string_view bytes) = 0;
  // Ends the input and returns the profile; kInvalidArgument if the file is
  // truncated or otherwise malformed. Call once; afterwards the profiler
  // only returns kFailedPrecondition.
  virtual absl::StatusOr<TableProfile> Finish() = 0;

 protected:
  TableProfiler() = default;
};

}  // namespace cairn::data

#endif  // CAIRN_DATA_PROFILE_H_
