#include "data/profile.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "absl/container/flat_hash_map.h"

namespace cairn::data {
namespace {

constexpr int kProfileVersion = 1;

char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

bool EndsWithIgnoreCase(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && EqualsIgnoreCase(s.substr(s.size() - suffix.size()), suffix);
}

// `s` cut to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view TruncateUtf8(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  // Back off over continuation bytes (10xxxxxx) to the start of a character.
  while (end > 0 && end > max - 3 && (static_cast<uint8_t>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

// `s` with every invalid UTF-8 sequence replaced by U+FFFD: nlohmann's
// dump() throws on invalid UTF-8, and CSV fields are arbitrary bytes.
std::string ValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    }
    bool valid = len > 0 && i + len <= s.size();
    for (size_t j = 1; valid && j < len; ++j) {
      const auto cc = static_cast<uint8_t>(s[i + j]);
      valid = (cc & 0xC0) == 0x80;
      cp = cp << 6 | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
    valid = valid && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
            !(cp >= 0xD800 && cp <= 0xDFFF);
    if (valid) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

std::string FormatInt(int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, end);
}

std::string FormatUint(uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, end);
}

// ---------------------------------------------------------------------------
// Space-Saving (Metwally, Agrawal, El Abbadi, ICDT 2005): the `capacity`
// most frequent keys in O(capacity) memory. When a new key arrives and the
// table is full, it replaces the key with the smallest count c and starts at
// c + 1 (error c). Any key seen more than n / capacity times is in the table,
// and each count is at most its error above the true count. A min-heap over
// the slots keeps every update O(log capacity).
class SpaceSaving {
 public:
  explicit SpaceSaving(size_t capacity) : capacity_(capacity) {}

  void Add(std::string_view key) {
    key = TruncateUtf8(key, kMaxTopValueBytes);
    auto it = index_.find(absl::string_view(key.data(), key.size()));
    if (it != index_.end()) {
      ++slots_[it->second].count;
      SiftDown(slots_[it->second].heap_pos);
      return;
    }
    if (slots_.size() < capacity_) {
      const auto slot = static_cast<uint32_t>(slots_.size());
      slots_.push_back({std::string(key), 1, 0, static_cast<uint32_t>(heap_.size())});
      heap_.push_back(slot);
      index_.emplace(slots_.back().key, slot);
      SiftUp(slots_[slot].heap_pos);
      return;
    }
    evicted_ = true;
    const uint32_t slot = heap_[0];
    Slot& s = slots_[slot];
    index_.erase(s.key);
    s.key.assign(key);
    s.error = s.count;
    s.count += 1;
    index_.emplace(s.key, slot);
    SiftDown(0);
  }

  // The `n` highest counts, highest first, ties by key.
  std::vector<TopValue> Top(size_t n) const {
    std::vector<const Slot*> sorted;
    sorted.reserve(slots_.size());
    for (const Slot& s : slots_) sorted.push_back(&s);
    std::sort(sorted.begin(), sorted.end(), [](const Slot* a, const Slot* b) {
      return a->count != b->count ? a->count > b->count : a->key < b->key;
    });
    std::vector<TopValue> out;
    for (size_t i = 0; i < sorted.size() && i < n; ++i) out.push_back({sorted[i]->key, sorted[i]->count});
    return out;
  }

  // The largest error among the `n` reported keys.
  uint64_t TopError(size_t n) const {
    std::vector<TopValue> top = Top(n);
    uint64_t error = 0;
    for (const TopValue& t : top) {
      auto it = index_.find(absl::string_view(t.value.data(), t.value.size()));
      error = std::max(error, slots_[it->second].error);
    }
    return error;
  }

  bool evicted() const { return evicted_; }
  size_t size() const { return slots_.size(); }

 private:
  struct Slot {
    std::string key;
    uint64_t count;
    uint64_t error;
    uint32_t heap_pos;
  };

  uint64_t CountAt(size_t pos) const { return slots_[heap_[pos]].count; }

  void Swap(size_t a, size_t b) {
    std::swap(heap_[a], heap_[b]);
    slots_[heap_[a]].heap_pos = static_cast<uint32_t>(a);
    slots_[heap_[b]].heap_pos = static_cast<uint32_t>(b);
  }

  void SiftUp(size_t pos) {
    while (pos > 0) {
      const size_t parent = (pos - 1) / 2;
      if (CountAt(parent) <= CountAt(pos)) break;
      Swap(parent, pos);
      pos = parent;
    }
  }

  void SiftDown(size_t pos) {
    for (;;) {
      size_t smallest = pos;
      const size_t left = 2 * pos + 1, right = left + 1;
      if (left < heap_.size() && CountAt(left) < CountAt(smallest)) smallest = left;
      if (right < heap_.size() && CountAt(right) < CountAt(smallest)) smallest = right;
      if (smallest == pos) return;
      Swap(pos, smallest);
      pos = smallest;
    }
  }

  const size_t capacity_;
  bool evicted_ = false;
  std::vector<Slot> slots_;
  std::vector<uint32_t> heap_;  // slot numbers, min-heap by count
  absl::flat_hash_map<std::string, uint32_t> index_;
};

// ---------------------------------------------------------------------------
// One column's running statistics. Values arrive already classified; the
// column's type is decided at the end from what arrived (see Finish).
class ColumnAccumulator {
 public:
  explicit ColumnAccumulator(bool track_top) : track_top_(track_top) {}

  void AddMissing() { ++missing_; }

  void AddBoolean(bool value) {
    ++booleans_;
    if (value) ++trues_;
    Count(value ? "true" : "false");
  }

  // An integer (as a double: statistics are approximate beyond 2^53) and its
  // canonical decimal text.
  void AddInteger(double value, std::string_view text) {
    ++integers_;
    AddNumber(value);
    Count(text);
  }

  // REQUIRES: !std::isnan(value).
  void AddFloat(double value, std::string_view text) {
    ++floats_;
    if (std::isinf(value)) {
      ++infinite_;
    } else {
      AddNumber(value);
    }
    Count(text);
  }

  void AddString(std::string_view text) {
    ++strings_;
    Count(text);
  }

  ColumnProfile Finish(std::string name) const {
    ColumnProfile p;
    p.name = std::move(name);
    p.count = booleans_ + integers_ + floats_ + strings_;
    p.missing = missing_;
    p.infinite = infinite_;
    // Widening: integer -> float -> string; booleans mixed with anything else
    // are strings.
    if (strings_ > 0 || (booleans_ > 0 && integers_ + floats_ > 0)) {
      p.type = "string";
    } else if (booleans_ > 0) {
      p.type = "boolean";
    } else if (floats_ > 0) {
      p.type = "float";
    } else if (integers_ > 0) {
      p.type = "integer";
    } else {
      p.type = "empty";
    }

    if ((p.type == "integer" || p.type == "float") && numbers_ > 0) {
      p.min = min_;
      p.max = max_;
      p.mean = mean_;
      p.stddev = numbers_ > 1 ? std::sqrt(m2_ / static_cast<double>(numbers_ - 1)) : 0.0;
      std::array<double, kProfileQuantiles.size()> q{};
      for (size_t i = 0; i < q.size(); ++i) q[i] = sketch_.Quantile(kProfileQuantiles[i]);
      p.quantiles = q;
      p.sketch = sketch_;
    } else if (p.type == "boolean") {
      const auto n = static_cast<double>(booleans_);
      const double mean = static_cast<double>(trues_) / n;
      p.min = trues_ == booleans_ ? 1.0 : 0.0;
      p.max = trues_ > 0 ? 1.0 : 0.0;
      p.mean = mean;
      p.stddev = booleans_ > 1 ? std::sqrt(mean * (1 - mean) * n / (n - 1)) : 0.0;
    }

    const bool report_top =
        top_ != nullptr && (p.type == "string" || p.type == "boolean" || (p.type == "integer" && !top_->evicted()));
    if (report_top) {
      p.top_values = top_->Top(kTopValues);
      p.top_values_exact = !top_->evicted();
      p.top_values_error = top_->evicted() ? top_->TopError(kTopValues) : 0;
      if (!top_->evicted()) p.distinct = top_->size();
    }
    return p;
  }

 private:
  void AddNumber(double value) {
    // Welford's update: stable for long columns, exact for small integers.
    ++numbers_;
    if (numbers_ == 1) {
      min_ = max_ = value;
    } else {
      min_ = std::min(min_, value);
      max_ = std::max(max_, value);
    }
    const double delta = value - mean_;
    mean_ += delta / static_cast<double>(numbers_);
    m2_ += delta * (value - mean_);
    sketch_.Add(value);
  }

  void Count(std::string_view text) {
    if (!track_top_) return;
    if (top_ == nullptr) top_ = std::make_unique<SpaceSaving>(kTopValueCapacity);
    top_->Add(text);
  }

  const bool track_top_;
  uint64_t missing_ = 0, booleans_ = 0, trues_ = 0, integers_ = 0, floats_ = 0, strings_ = 0, infinite_ = 0;
  uint64_t numbers_ = 0;  // integers and finite floats
  double min_ = 0, max_ = 0, mean_ = 0, m2_ = 0;
  QuantileSketch sketch_;
  std::unique_ptr<SpaceSaving> top_;  // allocated on first use
};

// ---------------------------------------------------------------------------
// CSV / TSV

bool IsMissingToken(std::string_view s) {
  return s.empty() || EqualsIgnoreCase(s, "na") || EqualsIgnoreCase(s, "n/a") || EqualsIgnoreCase(s, "nan") ||
         EqualsIgnoreCase(s, "null") || EqualsIgnoreCase(s, "none");
}

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Classifies one CSV field and adds it to `column`.
void AddCsvValue(ColumnAccumulator& column, std::string_view raw, bool overflow) {
  if (overflow) {
    column.AddString(raw);
    return;
  }
  std::string_view s = TrimBlanks(raw);
  if (IsMissingToken(s)) {
    column.AddMissing();
    return;
  }
  if (EqualsIgnoreCase(s, "true") || EqualsIgnoreCase(s, "false")) {
    column.AddBoolean(AsciiLower(s[0]) == 't');
    return;
  }
  // from_chars takes no '+'.
  const bool plus = s.front() == '+';
  const std::string_view num = plus ? s.substr(1) : s;
  if (!num.empty() && !(plus && (num.front() == '-' || num.front() == '+'))) {
    const char* begin = num.data();
    const char* end = begin + num.size();
    int64_t i = 0;
    auto [iptr, iec] = std::from_chars(begin, end, i);
    if (iptr == end && iec == std::errc()) {
      column.AddInteger(static_cast<double>(i), FormatInt(i));
      return;
    }
    double d = 0;
    auto [dptr, dec] = std::from_chars(begin, end, d);
    if (dptr == end && (dec == std::errc() || dec == std::errc::result_out_of_range)) {
      if (dec == std::errc::result_out_of_range) {
        // Overflow or underflow: strtod gives what it rounds to (+-inf, 0).
        d = std::strtod(std::string(num).c_str(), nullptr);
      }
      if (std::isnan(d)) {
        column.AddMissing();
      } else if (iptr == end && iec == std::errc::result_out_of_range) {
        column.AddInteger(d, num);  // digits only, past int64: still an integer
      } else {
        column.AddFloat(d, s);
      }
      return;
    }
  }
  column.AddString(raw);
}

class CsvProfiler final : public TableProfiler {
 public:
  CsvProfiler(std::string format, char delimiter) : format_(std::move(format)), delimiter_(delimiter) {}

  absl::Status Append(std::string_view bytes) override {
    if (finished_) return absl::FailedPreconditionError("Append after Finish");
    if (!status_.ok()) return status_;
    status_ = AppendInternal(bytes);
    return status_;
  }

  absl::StatusOr<TableProfile> Finish() override {
    if (finished_) return absl::FailedPreconditionError("Finish called twice");
    finished_ = true;
    if (!status_.ok()) return status_;
    if (!head_done_) {
      head_done_ = true;
      RETURN_IF_ERROR(Feed(head_));
    }
    switch (state_) {
      case State::kRecordStart:
      case State::kAfterCr:
        break;
      case State::kQuoted:
        return Error(field_line_, "a quoted field is never closed");
      case State::kFieldStart:
      case State::kUnquoted:
      case State::kQuoteInQuoted:
        RETURN_IF_ERROR(EndField());
        RETURN_IF_ERROR(EndRecord());
        break;
    }
    if (!have_header_) {
      return absl::InvalidArgumentError(fmt::format("{}: the file is empty; a header row is required", Upper()));
    }
    TableProfile profile;
    profile.format = format_;
    profile.rows = rows_;
    profile.column_count = column_count_;
    profile.columns.reserve(columns_.size());
    for (size_t i = 0; i < columns_.size(); ++i) profile.columns.push_back(columns_[i].Finish(std::move(names_[i])));
    return profile;
  }

 private:
  enum class State {
    kRecordStart,    // nothing of the current record read yet
    kFieldStart,     // after a delimiter
    kUnquoted,       // inside an unquoted field
    kQuoted,         // inside a quoted field
    kQuoteInQuoted,  // a '"' inside a quoted field: the end, or the first of ""
    kAfterCr,        // a record ended with '\r'; a '\n' next belongs to it
  };

  std::string Upper() const { return format_ == "tsv" ? "TSV" : "CSV"; }

  absl::Status Error(uint64_t line, std::string_view what) const {
    return absl::InvalidArgumentError(fmt::format("{} line {}: {}", Upper(), line, what));
  }

  absl::Status AppendInternal(std::string_view bytes) {
    if (!head_done_) {
      // Held back until three bytes are known, to drop a UTF-8 byte order
      // mark even when it is split across Appends.
      const size_t take = std::min(bytes.size(), 3 - head_.size());
      head_.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      if (head_.size() < 3) return absl::OkStatus();
      head_done_ = true;
      if (head_ != "\xEF\xBB\xBF") RETURN_IF_ERROR(Feed(head_));
    }
    return Feed(bytes);
  }

  void AppendToField(std::string_view text) {
    const size_t room = kMaxFieldBytes - field_.size();
    if (text.size() > room) {
      field_overflow_ = true;
      text = text.substr(0, room);
    }
    field_.append(text);
  }

  absl::Status Feed(std::string_view data) {
    size_t i = 0;
    while (i < data.size()) {
      const char c = data[i];
      switch (state_) {
        case State::kAfterCr:
          ++line_;
          state_ = State::kRecordStart;
          if (c == '\n') {
            ++i;
            continue;
          }
          [[fallthrough]];
        case State::kRecordStart:
          record_line_ = line_;
          if (c == '\n') {  // a blank line: skipped
            ++line_;
            ++i;
            continue;
          }
          if (c == '\r') {
            state_ = State::kAfterCr;
            ++i;
            continue;
          }
          state_ = State::kFieldStart;
          [[fallthrough]];
        case State::kFieldStart:
          if (c == '"') {
            state_ = State::kQuoted;
            field_line_ = line_;
            ++i;
            continue;
          }
          state_ = State::kUnquoted;
          [[fallthrough]];
        case State::kUnquoted: {
          // Take the run up to the next special byte at once. A '"' inside
          // an unquoted field is kept as a literal (as most writers expect).
          size_t j = i;
          while (j < data.size() && data[j] != delimiter_ && data[j] != '\n' && data[j] != '\r') ++j;
          AppendToField(data.substr(i, j - i));
          i = j;
          if (i < data.size()) {
            RETURN_IF_ERROR(EndOfFieldByte(data[i]));
            ++i;
          }
          continue;
        }
        case State::kQuoted: {
          size_t j = i;
          while (j < data.size() && data[j] != '"') {
            if (data[j] == '\n') ++line_;
            ++j;
          }
          AppendToField(data.substr(i, j - i));
          i = j;
          if (i < data.size()) {
            state_ = State::kQuoteInQuoted;
            ++i;
          }
          continue;
        }
        case State::kQuoteInQuoted:
          if (c == '"') {
            AppendToField("\"");
            state_ = State::kQuoted;
          } else if (c == delimiter_ || c == '\n' || c == '\r') {
            RETURN_IF_ERROR(EndOfFieldByte(c));
          } else {
            return Error(line_, fmt::format("field {}: unexpected character after a closing quote (a quote inside "
                                            "a quoted field is written as two quotes)",
                                            field_index_ + 1));
          }
          ++i;
          continue;
      }
    }
    return absl::OkStatus();
  }

  // `c` (a delimiter or line break) ends the current field.
  absl::Status EndOfFieldByte(char c) {
    RETURN_IF_ERROR(EndField());
    if (c == delimiter_) {
      if (have_header_ && field_index_ >= column_count_) {
        // Another field follows: report now rather than at the end of the row.
        return Error(record_line_, fmt::format("row {} has more than the header's {} fields", rows_ + 1,
                                               column_count_));
      }
      state_ = State::kFieldStart;
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(EndRecord());
    if (c == '\n') {
      ++line_;
      state_ = State::kRecordStart;
    } else {
      state_ = State::kAfterCr;
    }
    return absl::OkStatus();
  }

  absl::Status EndField() {
    if (!have_header_) {
      if (field_index_ < kMaxProfiledColumns) names_.push_back(field_);
    } else {
      if (field_index_ >= column_count_) {
        return Error(record_line_, fmt::format("row {} has more than the header's {} fields", rows_ + 1,
                                               column_count_));
      }
      if (field_index_ < columns_.size()) AddCsvValue(columns_[field_index_], field_, field_overflow_);
    }
    ++field_index_;
    field_.clear();
    field_overflow_ = false;
    return absl::OkStatus();
  }

  absl::Status EndRecord() {
    if (!have_header_) {
      have_header_ = true;
      column_count_ = field_index_;
      columns_.reserve(names_.size());
      for (size_t i = 0; i < names_.size(); ++i) columns_.emplace_back(/*track_top=*/true);
    } else {
      if (field_index_ != column_count_) {
        return Error(record_line_,
                     fmt::format("row {} has {} fields, the header has {}", rows_ + 1, field_index_, column_count_));
      }
      ++rows_;
    }
    field_index_ = 0;
    return absl::OkStatus();
  }

  const std::string format_;
  const char delimiter_;
  absl::Status status_;
  bool finished_ = false;
  std::string head_;
  bool head_done_ = false;

  State state_ = State::kRecordStart;
  std::string field_;  // the current field's first kMaxFieldBytes bytes
  bool field_overflow_ = false;
  size_t field_index_ = 0;  // fields completed in the current record
  uint64_t line_ = 1;        // physical line being read
  uint64_t record_line_ = 1;
  uint64_t field_line_ = 1;  // where the open quoted field started

  bool have_header_ = false;
  uint64_t column_count_ = 0;
  std::vector<std::string> names_;
  std::vector<ColumnAccumulator> columns_;
  uint64_t rows_ = 0;
};

// ---------------------------------------------------------------------------
// NumPy .npy (format 1.0, 2.0, 3.0)

constexpr std::string_view kNpyMagic = "\x93NUMPY";
constexpr size_t kMaxNpyHeader = 65536;
constexpr size_t kMaxNpyDims = 64;

struct NpyHeader {
  char kind = 0;  // 'b', 'i', 'u', 'f'
  size_t item_size = 0;
  bool big_endian = false;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
};

absl::Status NpyError(std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("invalid .npy header: {}", what));
}

// A parser for the header's Python dict literal, e.g.
// {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
class NpyDictParser {
 public:
  explicit NpyDictParser(std::string_view text) : text_(text) {}

  absl::StatusOr<NpyHeader> Parse() {
    NpyHeader h;
    std::string descr;
    bool has_descr = false, has_order = false, has_shape = false;
    SkipSpace();
    if (!Consume('{')) return NpyError("expected '{'");
    for (;;) {
      SkipSpace();
      if (Consume('}')) break;
      ASSIGN_OR_RETURN(std::string key, ParseString());
      SkipSpace();
      if (!Consume(':')) return NpyError(fmt::format("expected ':' after '{}'", key));
      SkipSpace();
      if (key == "descr") {
        if (has_descr) return NpyError("duplicate key 'descr'");
        has_descr = true;
        if (Peek() == '[') return NpyError("structured dtypes (a list as 'descr') are not supported");
        ASSIGN_OR_RETURN(descr, ParseString());
      } else if (key == "fortran_order") {
        if (has_order) return NpyError("duplicate key 'fortran_order'");
        has_order = true;
        if (ConsumeWord("True")) {
          h.fortran_order = true;
        } else if (!ConsumeWord("False")) {
          return NpyError("'fortran_order' must be True or False");
        }
      } else if (key == "shape") {
        if (has_shape) return NpyError("duplicate key 'shape'");
        has_shape = true;
        ASSIGN_OR_RETURN(h.shape, ParseShape());
      } else {
        return NpyError(fmt::format("unexpected key '{}'", key.substr(0, 64)));
      }
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume('}')) break;
      return NpyError("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return NpyError("unexpected text after the dictionary");
    if (!has_descr || !has_order || !has_shape) {
      return NpyError("the dictionary needs 'descr', 'fortran_order' and 'shape'");
    }
    RETURN_IF_ERROR(ParseDescr(descr, h));
    return h;
  }

 private:
  static absl::Status ParseDescr(std::string_view d, NpyHeader& h) {
    const std::string shown(d.substr(0, 32));
    if (d.size() < 3) return NpyError(fmt::format("unsupported dtype '{}'", shown));
    const char order = d[0];
    const char kind = d[1];
    size_t size = 0;
    for (char c : d.substr(2)) {
      if (c < '0' || c > '9' || size > 64) return NpyError(fmt::format("unsupported dtype '{}'", shown));
      size = size * 10 + static_cast<size_t>(c - '0');
    }
    const bool supported = (kind == 'b' && size == 1) || ((kind == 'i' || kind == 'u') && std::has_single_bit(size) &&
                                                          size <= 8) ||
                           (kind == 'f' && (size == 4 || size == 8));
    if (!supported) {
      return NpyError(fmt::format("unsupported dtype '{}' (supported: b1, i1-i8, u1-u8, f4, f8)", shown));
    }
    switch (order) {
      case '<':
        break;
      case '>':
        h.big_endian = true;
        break;
      case '=':
        h.big_endian = std::endian::native == std::endian::big;
        break;
      case '|':
        if (size != 1) return NpyError(fmt::format("dtype '{}' needs a byte order", shown));
        break;
      default:
        return NpyError(fmt::format("unsupported dtype '{}': bad byte order", shown));
    }
    h.kind = kind;
    h.item_size = size;
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<uint64_t>> ParseShape() {
    if (!Consume('(')) return NpyError("'shape' must be a tuple");
    std::vector<uint64_t> shape;
    for (;;) {
      SkipSpace();
      if (Consume(')')) break;
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
        return NpyError("'shape' must hold non-negative integers");
      }
      uint64_t v = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        const auto digit = static_cast<uint64_t>(text_[pos_] - '0');
        if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return NpyError("a dimension is too large");
        v = v * 10 + digit;
        ++pos_;
      }
      Consume('L');  // Python 2 wrote longs as 3L
      shape.push_back(v);
      if (shape.size() > kMaxNpyDims) return NpyError("too many dimensions");
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume(')')) break;
      return NpyError("expected ',' or ')' in 'shape'");
    }
    // Python writes a one-element tuple as (n,): "(n)" is just n.
    return shape;
  }

  absl::StatusOr<std::string> ParseString() {
    const char quote = Peek();
    if (quote != '\'' && quote != '"') return NpyError("expected a quoted string");
    ++pos_;
    const size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) return NpyError("unterminated string");
    std::string s(text_.substr(pos_, end - pos_));
    if (s.find('\\') != std::string::npos) return NpyError("escapes in strings are not supported");
    pos_ = end + 1;
    return s;
  }

  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool Consume(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }
  bool ConsumeWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

std::string ShapeText(const std::vector<uint64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

class NpyProfiler final : public TableProfiler {
 public:
  absl::Status Append(std::string_view bytes) override {
    if (finished_) return absl::FailedPreconditionError("Append after Finish");
    if (!status_.ok()) return status_;
    status_ = AppendInternal(bytes);
    return status_;
  }

  absl::StatusOr<TableProfile> Finish() override {
    if (finished_) return absl::FailedPreconditionError("Finish called twice");
    finished_ = true;
    if (!status_.ok()) return status_;
    if (!header_done_) {
      return absl::InvalidArgumentError(
          fmt::format(".npy file truncated: {} bytes, the header is not complete", header_buf_.size()));
    }
    if (received_ != expected_) {
      return absl::InvalidArgumentError(fmt::format(".npy data truncated: shape {} needs {} bytes, the file has {}",
                                                    ShapeText(header_.shape), expected_, received_));
    }
    TableProfile profile;
    profile.format = "npy";
    profile.rows = rows_;
    profile.column_count = cols_;
    profile.columns.reserve(columns_.size());
    for (size_t i = 0; i < columns_.size(); ++i) profile.columns.push_back(columns_[i].Finish(std::to_string(i)));
    return profile;
  }

 private:
  absl::Status AppendInternal(std::string_view bytes) {
    // The header is parsed in steps (magic and version, then its length,
    // then the dictionary), each taking only the bytes it needs.
    while (!header_done_) {
      if (bytes.empty()) return absl::OkStatus();
      const size_t consumed = std::min(bytes.size(), HeaderBytesWanted());
      header_buf_.append(bytes.substr(0, consumed));
      bytes.remove_prefix(consumed);
      RETURN_IF_ERROR(ParseHeaderIfComplete());
    }
    if (bytes.size() > expected_ - received_) {
      return absl::InvalidArgumentError(fmt::format(
          ".npy file has bytes past the end of its data (shape {} needs {} bytes)", ShapeText(header_.shape),
          expected_));
    }
    received_ += bytes.size();
    const size_t item = header_.item_size;
    if (!partial_.empty()) {
      const size_t take = std::min(bytes.size(), item - partial_.size());
      partial_.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      if (partial_.size() < item) return absl::OkStatus();
      AddElement(reinterpret_cast<const uint8_t*>(partial_.data()));
      partial_.clear();
    }
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    const size_t whole = bytes.size() / item * item;
    for (size_t off = 0; off < whole; off += item) AddElement(p + off);
    partial_.assign(bytes.substr(whole));
    return absl::OkStatus();
  }

  // How many more header bytes to buffer before parsing can go on.
  size_t HeaderBytesWanted() const {
    if (header_buf_.size() < 8) return 8 - header_buf_.size();
    const size_t prefix = header_buf_[6] == 1 ? 10 : 12;
    if (header_buf_.size() < prefix) return prefix - header_buf_.size();
    return header_total_ > header_buf_.size() ? header_total_ - header_buf_.size() : 0;
  }

  absl::Status ParseHeaderIfComplete() {
    const auto* b = reinterpret_cast<const uint8_t*>(header_buf_.data());
    if (header_buf_.size() < 8) {
      const size_t n = std::min(header_buf_.size(), kNpyMagic.size());
      if (std::string_view(header_buf_).substr(0, n) != kNpyMagic.substr(0, n)) {
        return absl::InvalidArgumentError("not a .npy file: bad magic");
      }
      return absl::OkStatus();
    }
    if (std::string_view(header_buf_).substr(0, 6) != kNpyMagic) {
      return absl::InvalidArgumentError("not a .npy file: bad magic");
    }
    const int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0) {
      return absl::InvalidArgumentError(
          fmt::format("unsupported .npy format version {}.{} (supported: 1.0, 2.0, 3.0)", major, minor));
    }
    const size_t prefix = major == 1 ? 10 : 12;
    if (header_buf_.size() < prefix) return absl::OkStatus();
    if (header_total_ == 0) {
      const size_t len = major == 1 ? (size_t{b[8]} | size_t{b[9]} << 8)
                                    : (size_t{b[8]} | size_t{b[9]} << 8 | size_t{b[10]} << 16 | size_t{b[11]} << 24);
      if (len > kMaxNpyHeader) {
        return NpyError(fmt::format("{} bytes long, more than the {} allowed", len, kMaxNpyHeader));
      }
      if (len == 0) return NpyError("empty");
      header_total_ = prefix + len;
    }
    if (header_buf_.size() < header_total_) return absl::OkStatus();

    std::string_view dict = std::string_view(header_buf_).substr(prefix);
    if (dict.back() != '\n') return NpyError("does not end with a newline");
    ASSIGN_OR_RETURN(header_, NpyDictParser(dict).Parse());
    RETURN_IF_ERROR(Layout());
    header_done_ = true;
    header_buf_.clear();
    header_buf_.shrink_to_fit();
    return absl::OkStatus();
  }

  // Rows, columns and the data size from the shape. 0-D is one value; 1-D a
  // single column; N-D is shape[0] rows of prod(shape[1:]) columns.
  absl::Status Layout() {
    const std::vector<uint64_t>& shape = header_.shape;
    if (header_.fortran_order && shape.size() > 2) {
      return NpyError(fmt::format("fortran_order arrays of {} dimensions are not supported (at most 2)", shape.size()));
    }
    uint64_t elements = 1;
    for (uint64_t d : shape) {
      if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / d) {
        return NpyError(fmt::format("shape {} overflows", ShapeText(shape)));
      }
      elements *= d;
    }
    if (elements > std::numeric_limits<uint64_t>::max() / header_.item_size) {
      return NpyError(fmt::format("shape {} overflows", ShapeText(shape)));
    }
    expected_ = elements * header_.item_size;
    rows_ = shape.empty() ? 1 : shape[0];
    cols_ = 1;
    for (size_t i = 1; i < shape.size(); ++i) {
      // Only reachable with a zero dimension elsewhere: saturate, nothing is read.
      cols_ = shape[i] != 0 && cols_ > std::numeric_limits<uint64_t>::max() / shape[i]
                  ? std::numeric_limits<uint64_t>::max()
                  : cols_ * shape[i];
    }
    const bool track_top = header_.kind != 'f';
    const auto profiled = static_cast<size_t>(std::min<uint64_t>(cols_, kMaxProfiledColumns));
    columns_.reserve(profiled);
    for (size_t i = 0; i < profiled; ++i) columns_.emplace_back(track_top);
    return absl::OkStatus();
  }

  uint64_t Load(const uint8_t* p) const {
    uint64_t v = 0;
    const size_t n = header_.item_size;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{p[header_.big_endian ? n - 1 - i : i]} << (8 * i);
    return v;
  }

  void AddElement(const uint8_t* p) {
    // C order walks a row's columns in turn; Fortran order (2-D) a column's rows.
    uint64_t col = 0;
    if (header_.fortran_order) {
      col = major_;
      if (++minor_ == rows_) {
        minor_ = 0;
        ++major_;
      }
    } else {
      col = minor_;
      if (++minor_ == cols_) minor_ = 0;
    }
    if (col >= columns_.size()) return;
    ColumnAccumulator& column = columns_[col];
    const uint64_t bits = Load(p);
    switch (header_.kind) {
      case 'b':
        column.AddBoolean(bits != 0);
        break;
      case 'i': {
        const unsigned shift = 64 - 8 * static_cast<unsigned>(header_.item_size);
        const auto v = static_cast<int64_t>(bits << shift) >> shift;  // sign-extend
        column.AddInteger(static_cast<double>(v), FormatInt(v));
        break;
      }
      case 'u':
        column.AddInteger(static_cast<double>(bits), FormatUint(bits));
        break;
      case 'f': {
        const double v = header_.item_size == 4 ? static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(bits)))
                                                : std::bit_cast<double>(bits);
        if (std::isnan(v)) {
          column.AddMissing();
        } else {
          column.AddFloat(v, {});
        }
        break;
      }
      default:
        break;
    }
  }

  absl::Status status_;
  bool finished_ = false;
  std::string header_buf_;
  size_t header_total_ = 0;  // magic + lengths + dict, once known
  bool header_done_ = false;
  NpyHeader header_;
  uint64_t rows_ = 0, cols_ = 0;
  uint64_t expected_ = 0, received_ = 0;  // data bytes
  std::string partial_;                   // an element split across Appends
  uint64_t major_ = 0, minor_ = 0;        // position: (row, col) or (col, row)
  std::vector<ColumnAccumulator> columns_;
};

// ---------------------------------------------------------------------------
// JSON

// Integer columns' statistics that are whole numbers are written as JSON
// integers (3, not 3.0).
Json Number(double v, bool integral) {
  if (integral && std::isfinite(v) && v == std::trunc(v) && std::abs(v) < 9007199254740992.0) {
    return Json(static_cast<int64_t>(v));
  }
  return JsonDouble(v);
}

absl::StatusOr<std::optional<double>> GetOptionalDouble(const Json& obj, std::string_view field) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return std::optional<double>();
  ASSIGN_OR_RETURN(double v, GetDouble(obj, field));
  return std::optional<double>(v);
}

absl::StatusOr<uint64_t> GetCount(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(int64_t v, GetInt(obj, field));
  if (v < 0) return absl::InvalidArgumentError(fmt::format("field '{}' must not be negative", field));
  return static_cast<uint64_t>(v);
}

std::string QuantileName(double q) { return fmt::format("p{}", static_cast<int>(std::lround(q * 100))); }

Json ColumnToJson(const ColumnProfile& c) {
  const bool integral = c.type == "integer" || c.type == "boolean";
  Json j = Json::object();
  j["name"] = ValidUtf8(c.name);
  j["type"] = c.type;
  j["count"] = c.count;
  j["missing"] = c.missing;
  j["infinite"] = c.infinite;
  if (c.min) j["min"] = Number(*c.min, integral);
  if (c.max) j["max"] = Number(*c.max, integral);
  if (c.mean) j["mean"] = JsonDouble(*c.mean);
  if (c.stddev) j["std"] = JsonDouble(*c.stddev);
  if (c.quantiles) {
    Json q = Json::object();
    for (size_t i = 0; i < kProfileQuantiles.size(); ++i) {
      q[QuantileName(kProfileQuantiles[i])] = Number((*c.quantiles)[i], integral);
    }
    j["quantiles"] = std::move(q);
  }
  if (c.sketch) j["sketch"] = c.sketch->ToJson();
  if (!c.top_values.empty() || c.distinct) {
    Json top = Json::array();
    for (const TopValue& t : c.top_values) top.push_back({{"value", ValidUtf8(t.value)}, {"count", t.count}});
    j["top_values"] = std::move(top);
    j["top_values_exact"] = c.top_values_exact;
    j["top_values_error"] = c.top_values_error;
  }
  if (c.distinct) j["distinct"] = *c.distinct;
  return j;
}

absl::StatusOr<ColumnProfile> ColumnFromJson(const Json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("a column must be a JSON object");
  ColumnProfile c;
  ASSIGN_OR_RETURN(c.name, GetString(j, "name"));
  ASSIGN_OR_RETURN(c.type, GetString(j, "type"));
  if (c.type != "integer" && c.type != "float" && c.type != "boolean" && c.type != "string" && c.type != "empty") {
    return absl::InvalidArgumentError(fmt::format("unknown column type '{}'", c.type.substr(0, 32)));
  }
  ASSIGN_OR_RETURN(c.count, GetCount(j, "count"));
  ASSIGN_OR_RETURN(c.missing, GetCount(j, "missing"));
  ASSIGN_OR_RETURN(c.infinite, GetCount(j, "infinite"));
  ASSIGN_OR_RETURN(c.min, GetOptionalDouble(j, "min"));
  ASSIGN_OR_RETURN(c.max, GetOptionalDouble(j, "max"));
  ASSIGN_OR_RETURN(c.mean, GetOptionalDouble(j, "mean"));
  ASSIGN_OR_RETURN(c.stddev, GetOptionalDouble(j, "std"));
  if (auto it = j.find("quantiles"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return absl::InvalidArgumentError("field 'quantiles' must be an object");
    std::array<double, kProfileQuantiles.size()> q{};
    for (size_t i = 0; i < q.size(); ++i) {
      ASSIGN_OR_RETURN(q[i], GetDouble(*it, QuantileName(kProfileQuantiles[i])));
    }
    c.quantiles = q;
  }
  if (auto it = j.find("sketch"); it != j.end() && !it->is_null()) {
    ASSIGN_OR_RETURN(QuantileSketch sketch, QuantileSketch::FromJson(*it));
    c.sketch = std::move(sketch);
  }
  ASSIGN_OR_RETURN(std::vector<Json> top, GetOptionalArray(j, "top_values"));
  if (top.size() > kTopValueCapacity) return absl::InvalidArgumentError("too many top_values");
  for (const Json& t : top) {
    if (!t.is_object()) return absl::InvalidArgumentError("a top value must be an object");
    TopValue v;
    ASSIGN_OR_RETURN(v.value, GetString(t, "value"));
    ASSIGN_OR_RETURN(v.count, GetCount(t, "count"));
    c.top_values.push_back(std::move(v));
  }
  ASSIGN_OR_RETURN(std::optional<bool> exact, GetOptionalBool(j, "top_values_exact"));
  c.top_values_exact = exact.value_or(true);
  ASSIGN_OR_RETURN(std::optional<int64_t> error, GetOptionalInt(j, "top_values_error"));
  if (error.value_or(0) < 0) return absl::InvalidArgumentError("field 'top_values_error' must not be negative");
  c.top_values_error = static_cast<uint64_t>(error.value_or(0));
  ASSIGN_OR_RETURN(std::optional<int64_t> distinct, GetOptionalInt(j, "distinct"));
  if (distinct) {
    if (*distinct < 0) return absl::InvalidArgumentError("field 'distinct' must not be negative");
    c.distinct = static_cast<uint64_t>(*distinct);
  }
  return c;
}

}  // namespace

bool IsTabularPath(std::string_view path) {
  return EndsWithIgnoreCase(path, ".csv") || EndsWithIgnoreCase(path, ".tsv") || EndsWithIgnoreCase(path, ".npy");
}

// ---------------------------------------------------------------------------
// QuantileSketch
//
// Level h holds values of weight 2^h. Level h's capacity shrinks
// geometrically (factor 2/3) below the top level, so the total stays near 3k.
// Compacting a full level sorts it and promotes every other value (odd or
// even positions, by a coin flip) to the level above; with an odd count the
// smallest value stays, so the total weight is always exactly n.

namespace {
constexpr double kLevelShrink = 2.0 / 3.0;
constexpr uint64_t kSketchSeed = 0x9E3779B97F4A7C15ull;
constexpr size_t kMaxSketchLevels = 64;
}  // namespace

QuantileSketch::QuantileSketch(int k) : k_(std::clamp(k, 8, 1 << 16)), rng_(kSketchSeed) { Grow(); }

size_t QuantileSketch::Capacity(size_t level) const {
  const size_t depth = levels_.size() - level - 1;
  return static_cast<size_t>(std::ceil(k_ * std::pow(kLevelShrink, static_cast<double>(depth)))) + 1;
}

void QuantileSketch::Grow() {
  levels_.emplace_back();
  max_size_ = 0;
  for (size_t h = 0; h < levels_.size(); ++h) max_size_ += Capacity(h);
}

void QuantileSketch::Add(double value) {
  levels_[0].push_back(value);
  ++n_;
  ++size_;
  // A pass may leave the sketch full (growing shrinks the lower levels'
  // capacities); keeping size_ < max_size_ always makes FromJson(ToJson())
  // give back the same sketch.
  while (size_ >= max_size_) Compress();
}

void QuantileSketch::Compress() {
  for (size_t h = 0; h < levels_.size(); ++h) {
    if (levels_[h].size() < Capacity(h)) continue;
    if (h + 1 == levels_.size()) Grow();
    std::vector<double>& level = levels_[h];
    std::sort(level.begin(), level.end());
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    const size_t offset = rng_ >> 63;
    const size_t keep = level.size() % 2;  // the smallest value stays when odd
    for (size_t i = keep + offset; i < level.size(); i += 2) levels_[h + 1].push_back(level[i]);
    level.resize(keep);
    size_ = 0;
    for (const auto& l : levels_) size_ += l.size();
    if (size_ < max_size_) break;
  }
}

void QuantileSketch::Merge(const QuantileSketch& other) {
  while (levels_.size() < other.levels_.size()) Grow();
  for (size_t h = 0; h < other.levels_.size(); ++h) {
    levels_[h].insert(levels_[h].end(), other.levels_[h].begin(), other.levels_[h].end());
  }
  n_ += other.n_;
  size_ += other.size_;
  while (size_ >= max_size_) Compress();
}

size_t QuantileSketch::retained() const { return size_; }

double QuantileSketch::Quantile(double q) const {
  std::vector<std::pair<double, uint64_t>> items;
  items.reserve(size_);
  for (size_t h = 0; h < levels_.size(); ++h) {
    for (double v : levels_[h]) items.emplace_back(v, uint64_t{1} << h);
  }
  if (items.empty()) return 0;
  std::sort(items.begin(), items.end());
  const double target = std::clamp(q, 0.0, 1.0) * static_cast<double>(n_);
  uint64_t cumulative = 0;
  for (const auto& [value, weight] : items) {
    cumulative += weight;
    if (static_cast<double>(cumulative) >= target) return value;
  }
  return items.back().first;
}

Json QuantileSketch::ToJson() const {
  Json levels = Json::array();
  for (const auto& level : levels_) levels.push_back(level);
  return Json{{"k", k_}, {"n", n_}, {"levels", std::move(levels)}};
}

absl::StatusOr<QuantileSketch> QuantileSketch::FromJson(const Json& json) {
  if (!json.is_object()) return absl::InvalidArgumentError("a sketch must be a JSON object");
  ASSIGN_OR_RETURN(int64_t k, GetInt(json, "k"));
  if (k < 8 || k > (1 << 16)) return absl::InvalidArgumentError(fmt::format("sketch k {} out of range", k));
  ASSIGN_OR_RETURN(int64_t n, GetInt(json, "n"));
  if (n < 0) return absl::InvalidArgumentError("sketch n must not be negative");
  ASSIGN_OR_RETURN(std::vector<Json> levels, GetOptionalArray(json, "levels"));
  if (levels.size() > kMaxSketchLevels) return absl::InvalidArgumentError("sketch has too many levels");
  QuantileSketch sketch(static_cast<int>(k));
  while (sketch.levels_.size() < levels.size()) sketch.Grow();
  uint64_t weight = 0;
  size_t held = 0;
  for (size_t h = 0; h < levels.size(); ++h) {
    if (!levels[h].is_array()) return absl::InvalidArgumentError("sketch levels must be arrays");
    held += levels[h].size();
    // Far more than any sketch holds: a bound on what outside JSON can make us allocate.
    if (held > 64 * static_cast<size_t>(k) + 4096) return absl::InvalidArgumentError("sketch holds too many values");
    for (const Json& v : levels[h]) {
      if (!v.is_number() || !std::isfinite(v.get<double>())) {
        return absl::InvalidArgumentError("sketch values must be finite numbers");
      }
      sketch.levels_[h].push_back(v.get<double>());
    }
    const uint64_t level_weight = uint64_t{levels[h].size()} << h;
    if (h >= 63 && !levels[h].empty()) return absl::InvalidArgumentError("sketch weight overflows");
    if ((level_weight >> h) != levels[h].size() || weight + level_weight < weight) {
      return absl::InvalidArgumentError("sketch weight overflows");
    }
    weight += level_weight;
  }
  if (weight != static_cast<uint64_t>(n)) {
    return absl::InvalidArgumentError(
        fmt::format("sketch n is {} but its levels weigh {}", n, weight));
  }
  sketch.n_ = weight;
  sketch.size_ = held;
  while (sketch.size_ >= sketch.max_size_) sketch.Compress();
  return sketch;
}

// ---------------------------------------------------------------------------
// TableProfile

Json TableProfile::ToJson() const {
  Json cols = Json::array();
  for (const ColumnProfile& c : columns) cols.push_back(ColumnToJson(c));
  return Json{{"version", kProfileVersion},
              {"format", format},
              {"rows", rows},
              {"column_count", column_count},
              {"columns", std::move(cols)}};
}

absl::StatusOr<TableProfile> TableProfile::FromJson(const Json& json) {
  // The accessors below do not throw; the guard is for anything missed, so
  // that no exception leaves this module.
  try {
    if (!json.is_object()) return absl::InvalidArgumentError("a table profile must be a JSON object");
    ASSIGN_OR_RETURN(int64_t version, GetInt(json, "version"));
    if (version != kProfileVersion) {
      return absl::InvalidArgumentError(fmt::format("unsupported table profile version {}", version));
    }
    TableProfile p;
    ASSIGN_OR_RETURN(p.format, GetString(json, "format"));
    if (p.format != "csv" && p.format != "tsv" && p.format != "npy") {
      return absl::InvalidArgumentError(fmt::format("unknown table format '{}'", p.format.substr(0, 32)));
    }
    ASSIGN_OR_RETURN(p.rows, GetCount(json, "rows"));
    ASSIGN_OR_RETURN(p.column_count, GetCount(json, "column_count"));
    ASSIGN_OR_RETURN(std::vector<Json> cols, GetOptionalArray(json, "columns"));
    if (cols.size() > p.column_count || cols.size() > kMaxProfiledColumns) {
      return absl::InvalidArgumentError("more column profiles than columns");
    }
    for (size_t i = 0; i < cols.size(); ++i) {
      absl::StatusOr<ColumnProfile> c = ColumnFromJson(cols[i]);
      if (!c.ok()) return Annotate(c.status(), fmt::format("column {}", i));
      p.columns.push_back(*std::move(c));
    }
    return p;
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(fmt::format("invalid table profile: {}", e.what()));
  }
}

// ---------------------------------------------------------------------------
// TableProfiler

absl::StatusOr<std::unique_ptr<TableProfiler>> TableProfiler::ForFormat(std::string_view format) {
  if (format == "csv") return std::make_unique<CsvProfiler>("csv", ',');
  if (format == "tsv") return std::make_unique<CsvProfiler>("tsv", '\t');
  if (format == "npy") return std::make_unique<NpyProfiler>();
  return absl::InvalidArgumentError(
      fmt::format("unknown table format '{}' (known: csv, tsv, npy)", format.substr(0, 32)));
}

absl::StatusOr<std::unique_ptr<TableProfiler>> TableProfiler::ForPath(std::string_view path) {
  if (!IsTabularPath(path)) {
    return absl::InvalidArgumentError(
        fmt::format("'{}' is not a tabular file (.csv, .tsv or .npy)", ValidUtf8(path.substr(0, 256))));
  }
  std::string ext(path.substr(path.size() - 3));
  for (char& c : ext) c = AsciiLower(c);
  return ForFormat(ext);
}

}  // namespace cairn::data
