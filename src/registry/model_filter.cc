#include "registry/model_filter.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>

#include "base/json.h"
#include "base/quoted.h"

namespace cairn::registry {
namespace {

// Bounds the work one filter can cause (each clause is evaluated per row).
constexpr size_t kMaxFilterLength = 16 * 1024;

bool IsWordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$' || c == '#' ||
         static_cast<unsigned char>(c) >= 0x80;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

absl::Status FilterError(size_t pos, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("Invalid filter at position {}: {}", pos, what));
}

class FilterParser {
 public:
  FilterParser(std::string_view text, FilterTarget target) : text_(text), target_(target) {}

  absl::StatusOr<ModelFilter> Parse() {
    ModelFilter filter;
    SkipSpace();
    if (AtEnd()) return filter;
    for (;;) {
      ASSIGN_OR_RETURN(FilterClause clause, ParseComparison());
      filter.clauses.push_back(std::move(clause));
      SkipSpace();
      if (AtEnd()) return filter;
      size_t at = pos_;
      std::string word = Lower(ReadWord());
      if (word != "and") {
        if (word == "or") return FilterError(at, "OR is not supported; only AND joins comparisons");
        return FilterError(at, "expected AND or the end of the filter");
      }
      SkipSpace();
      if (AtEnd()) return FilterError(pos_, "expected a comparison after AND");
    }
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }
  void SkipSpace() {
    while (!AtEnd() && std::isspace(static_cast<unsigned char>(text_[pos_])) != 0) ++pos_;
  }
  std::string_view ReadWord() {
    size_t start = pos_;
    while (!AtEnd() && IsWordChar(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  // A quoted run: 'x', "x" or `x`; the quote doubled embeds it; in '' and ""
  // a backslash escapes the quote (MLflow accepts both forms).
  absl::StatusOr<std::string> ReadQuoted() {
    const size_t start = pos_;
    const Backslash backslash = text_[pos_] == '`' ? Backslash::kLiteral : Backslash::kEscapes;
    std::optional<std::string> s = cairn::ReadQuoted(text_, &pos_, backslash);
    if (!s) return FilterError(start, "unterminated quoted string");
    return *std::move(s);
  }

  absl::StatusOr<FilterClause> ParseComparison() {
    FilterClause clause;
    size_t ident_pos = pos_;
    if (Peek() == '(') return FilterError(pos_, "parentheses are not supported");
    std::string head = Lower(ReadWord());
    if (head.empty()) return FilterError(ident_pos, "expected an identifier such as name or tags.<key>");
    if (head == "attribute" || head == "attributes") {
      if (Peek() != '.') return FilterError(pos_, "expected '.' after attribute");
      ++pos_;
      ident_pos = pos_;
      head = Lower(ReadWord());
    }
    if (head == "tag" || head == "tags") {
      if (Peek() != '.') return FilterError(pos_, "expected '.' and a key after tags");
      ++pos_;
      clause.field = FilterField::kTag;
      if (Peek() == '`' || Peek() == '"') {
        ASSIGN_OR_RETURN(clause.tag_key, ReadQuoted());
      } else {
        size_t start = pos_;
        while (!AtEnd() && (IsWordChar(text_[pos_]) || text_[pos_] == '.')) ++pos_;
        clause.tag_key = std::string(text_.substr(start, pos_ - start));
      }
      if (clause.tag_key.empty()) return FilterError(pos_, "empty tag key");
    } else if (head == "name") {
      clause.field = FilterField::kName;
    } else if (target_ == FilterTarget::kModelVersions && head == "run_id") {
      clause.field = FilterField::kRunId;
    } else if (target_ == FilterTarget::kModelVersions && head == "source_path") {
      clause.field = FilterField::kSourcePath;
    } else if (target_ == FilterTarget::kModelVersions && head == "version_number") {
      clause.field = FilterField::kVersionNumber;
    } else {
      return FilterError(ident_pos,
                         fmt::format("invalid attribute key '{}'; valid keys: {}", head,
                                     target_ == FilterTarget::kRegisteredModels
                                         ? "name, tags.<key>"
                                         : "name, run_id, source_path, version_number, tags.<key>"));
    }
    SkipSpace();
    size_t op_pos = pos_;
    ASSIGN_OR_RETURN(clause.op, ParseOperator());
    RETURN_IF_ERROR(CheckOperator(clause, op_pos));
    SkipSpace();
    size_t value_pos = pos_;
    if (clause.op == FilterOp::kIn || clause.op == FilterOp::kNotIn) {
      ASSIGN_OR_RETURN(clause.strings, ParseList());
    } else if (clause.field == FilterField::kVersionNumber) {
      ASSIGN_OR_RETURN(clause.number, ParseInteger());
    } else {
      if (Peek() != '\'' && Peek() != '"') return FilterError(value_pos, "expected a quoted string value");
      ASSIGN_OR_RETURN(std::string s, ReadQuoted());
      clause.strings.push_back(std::move(s));
    }
    return clause;
  }

  absl::StatusOr<FilterOp> ParseOperator() {
    size_t at = pos_;
    auto take = [&](std::string_view op) {
      if (text_.substr(pos_, op.size()) != op) return false;
      pos_ += op.size();
      return true;
    };
    if (take("!=") || take("<>")) return FilterOp::kNe;
    if (take("<=")) return FilterOp::kLe;
    if (take(">=")) return FilterOp::kGe;
    if (take("==") || take("=")) return FilterOp::kEq;
    if (take("<")) return FilterOp::kLt;
    if (take(">")) return FilterOp::kGt;
    std::string word = Lower(ReadWord());
    if (word == "like") return FilterOp::kLike;
    if (word == "ilike") return FilterOp::kILike;
    if (word == "in") return FilterOp::kIn;
    if (word == "not") {
      SkipSpace();
      if (Lower(ReadWord()) == "in") return FilterOp::kNotIn;
    }
    return FilterError(at, "expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN)");
  }

  absl::Status CheckOperator(const FilterClause& clause, size_t at) const {
    const FilterOp op = clause.op;
    const bool ordering = op == FilterOp::kLt || op == FilterOp::kLe || op == FilterOp::kGt || op == FilterOp::kGe;
    const bool list = op == FilterOp::kIn || op == FilterOp::kNotIn;
    const bool like = op == FilterOp::kLike || op == FilterOp::kILike;
    switch (clause.field) {
      case FilterField::kVersionNumber:
        if (like || list) return FilterError(at, "version_number takes =, !=, <, <=, > or >= with an integer");
        return absl::OkStatus();
      case FilterField::kRunId:
        if (ordering) return FilterError(at, "run_id takes =, !=, LIKE, ILIKE, IN or NOT IN");
        return absl::OkStatus();
      case FilterField::kName:
      case FilterField::kSourcePath:
      case FilterField::kTag:
        if (ordering || list) return FilterError(at, "this key takes =, !=, LIKE or ILIKE with a string");
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ParseList() {
    if (Peek() != '(') return FilterError(pos_, "expected '(' and a list of quoted strings");
    ++pos_;
    std::vector<std::string> values;
    for (;;) {
      SkipSpace();
      if (Peek() != '\'' && Peek() != '"') return FilterError(pos_, "expected a quoted string in the list");
      ASSIGN_OR_RETURN(std::string s, ReadQuoted());
      values.push_back(std::move(s));
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() == ')') {
        ++pos_;
        return values;
      }
      return FilterError(pos_, "expected ',' or ')' in the list");
    }
  }

  absl::StatusOr<int64_t> ParseInteger() {
    size_t at = pos_;
    std::string digits;
    if (Peek() == '\'' || Peek() == '"') {
      ASSIGN_OR_RETURN(digits, ReadQuoted());
    } else {
      size_t start = pos_;
      if (Peek() == '-' || Peek() == '+') ++pos_;
      while (!AtEnd() && IsWordChar(text_[pos_])) ++pos_;
      digits = std::string(text_.substr(start, pos_ - start));
    }
    int64_t value = 0;
    const char* end = digits.data() + digits.size();
    const char* begin = digits.data();
    if (!digits.empty() && digits[0] == '+') ++begin;
    auto [ptr, ec] = std::from_chars(begin, end, value);
    if (ec != std::errc() || ptr != end || begin == end) {
      return FilterError(at, fmt::format("expected an integer version number, got '{}'", digits));
    }
    return value;
  }

  std::string_view text_;
  FilterTarget target_;
  size_t pos_ = 0;
};

// A LIKE pattern element.
struct PatternUnit {
  enum Kind { kLiteral, kAnyOne, kAnySeq } kind;
  char32_t ch = 0;
};

// Decodes UTF-8 into code points; each byte of an invalid sequence counts as
// one unit, so every input has a decoding.
std::vector<char32_t> Decode(std::string_view s, bool fold) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (!ok) {
      out.push_back(0x110000 + c);  // outside Unicode: never equal to a real character
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    if (fold && cp < 0x80) cp = static_cast<char32_t>(std::tolower(static_cast<int>(cp)));
    out.push_back(cp);
    i += len;
  }
  return out;
}

bool ClauseHolds(const FilterClause& clause, const FilterSubject& subject) {
  std::string_view value;
  switch (clause.field) {
    case FilterField::kName: value = subject.name; break;
    case FilterField::kRunId: value = subject.run_id; break;
    case FilterField::kSourcePath: value = subject.source; break;
    case FilterField::kTag: {
      if (subject.tags == nullptr) return false;
      auto it = subject.tags->find(clause.tag_key);
      if (it == subject.tags->end()) return false;
      value = it->second;
      break;
    }
    case FilterField::kVersionNumber: {
      const int64_t v = subject.version, n = clause.number;
      switch (clause.op) {
        case FilterOp::kEq: return v == n;
        case FilterOp::kNe: return v != n;
        case FilterOp::kLt: return v < n;
        case FilterOp::kLe: return v <= n;
        case FilterOp::kGt: return v > n;
        case FilterOp::kGe: return v >= n;
        default: return false;
      }
    }
  }
  switch (clause.op) {
    case FilterOp::kEq: return value == clause.strings[0];
    case FilterOp::kNe: return value != clause.strings[0];
    case FilterOp::kLike: return LikeMatch(value, clause.strings[0], false);
    case FilterOp::kILike: return LikeMatch(value, clause.strings[0], true);
    case FilterOp::kIn:
      return std::find(clause.strings.begin(), clause.strings.end(), value) != clause.strings.end();
    case FilterOp::kNotIn:
      return std::find(clause.strings.begin(), clause.strings.end(), value) == clause.strings.end();
    default: return false;
  }
}

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) n |= static_cast<unsigned char>(in[i + 2]);
    out += kBase64[(n >> 18) & 63];
    out += kBase64[(n >> 12) & 63];
    out += i + 1 < in.size() ? kBase64[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kBase64[n & 63] : '=';
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t n = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      char c = in[i + k];
      int v;
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        ++pad;
        v = 0;
      } else {
        if (pad > 0) return std::nullopt;
        const char* p = std::strchr(kBase64, c);
        if (c == '\0' || p == nullptr) return std::nullopt;
        v = static_cast<int>(p - kBase64);
      }
      n = (n << 6) | static_cast<uint32_t>(v);
    }
    out += static_cast<char>((n >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
  }
  return out;
}

}  // namespace

absl::StatusOr<ModelFilter> ParseModelFilter(std::string_view filter, FilterTarget target) {
  if (filter.size() > kMaxFilterLength) {
    return absl::InvalidArgumentError(
        fmt::format("Filter string is {} bytes long; the limit is {}", filter.size(), kMaxFilterLength));
  }
  if (filter.find('\0') != std::string_view::npos) {
    return FilterError(filter.find('\0'), "NUL character in filter");
  }
  return FilterParser(filter, target).Parse();
}

bool Matches(const ModelFilter& filter, const FilterSubject& subject) {
  for (const FilterClause& clause : filter.clauses) {
    if (!ClauseHolds(clause, subject)) return false;
  }
  return true;
}

bool LikeMatch(std::string_view value, std::string_view pattern, bool case_insensitive) {
  std::vector<char32_t> pat = Decode(pattern, case_insensitive);
  std::vector<PatternUnit> units;
  for (size_t i = 0; i < pat.size(); ++i) {
    if (pat[i] == '\\' && i + 1 < pat.size()) {
      units.push_back({PatternUnit::kLiteral, pat[++i]});
    } else if (pat[i] == '%') {
      if (units.empty() || units.back().kind != PatternUnit::kAnySeq) units.push_back({PatternUnit::kAnySeq});
    } else if (pat[i] == '_') {
      units.push_back({PatternUnit::kAnyOne});
    } else {
      units.push_back({PatternUnit::kLiteral, pat[i]});
    }
  }
  std::vector<char32_t> s = Decode(value, case_insensitive);
  // Greedy match with backtracking to the last '%': O(|s| * |pattern|) at worst.
  size_t si = 0, pi = 0;
  std::optional<size_t> star_p;
  size_t star_s = 0;
  while (si < s.size()) {
    if (pi < units.size() && units[pi].kind == PatternUnit::kAnySeq) {
      star_p = pi++;
      star_s = si;
    } else if (pi < units.size() &&
               (units[pi].kind == PatternUnit::kAnyOne || units[pi].ch == s[si])) {
      ++pi;
      ++si;
    } else if (star_p) {
      pi = *star_p + 1;
      si = ++star_s;
    } else {
      return false;
    }
  }
  while (pi < units.size() && units[pi].kind == PatternUnit::kAnySeq) ++pi;
  return pi == units.size();
}

absl::StatusOr<std::vector<OrderKey>> ParseModelOrderBy(const std::vector<std::string>& order_by,
                                                        FilterTarget target) {
  std::vector<OrderKey> keys;
  for (const std::string& entry : order_by) {
    std::vector<std::string> words;
    size_t i = 0;
    while (i < entry.size()) {
      while (i < entry.size() && std::isspace(static_cast<unsigned char>(entry[i])) != 0) ++i;
      size_t start = i;
      while (i < entry.size() && std::isspace(static_cast<unsigned char>(entry[i])) == 0) ++i;
      if (i > start) words.push_back(entry.substr(start, i - start));
    }
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(fmt::format("Invalid order_by clause '{}': {}", entry, why));
    };
    if (words.empty() || words.size() > 2) return bad("expected 'key [ASC|DESC]'");
    OrderKey key;
    std::string field = Lower(words[0]);
    if (field.rfind("attribute.", 0) == 0) field = field.substr(10);
    if (field.rfind("attributes.", 0) == 0) field = field.substr(11);
    if (field == "name") {
      key.field = OrderField::kName;
    } else if (field == "last_updated_timestamp" || field == "timestamp") {
      key.field = OrderField::kLastUpdated;
    } else if (field == "creation_timestamp") {
      key.field = OrderField::kCreation;
    } else if (field == "version_number" && target == FilterTarget::kModelVersions) {
      key.field = OrderField::kVersionNumber;
    } else {
      return bad(target == FilterTarget::kRegisteredModels
                     ? "valid keys are name, last_updated_timestamp (timestamp), creation_timestamp"
                     : "valid keys are name, version_number, last_updated_timestamp (timestamp), "
                       "creation_timestamp");
    }
    if (words.size() == 2) {
      std::string dir = Lower(words[1]);
      if (dir == "asc") key.ascending = true;
      else if (dir == "desc") key.ascending = false;
      else return bad("the direction must be ASC or DESC");
    }
    for (const OrderKey& k : keys) {
      if (k.field == key.field) return bad("the key is already ordered by");
    }
    keys.push_back(key);
  }
  return keys;
}

std::string EncodePageToken(int64_t offset) { return Base64Encode(Json{{"offset", offset}}.dump()); }

absl::StatusOr<int64_t> DecodePageToken(std::string_view token) {
  if (token.empty()) return 0;
  if (token.size() > 256) return absl::InvalidArgumentError("Invalid page token");
  std::optional<std::string> json = Base64Decode(token);
  if (!json) return absl::InvalidArgumentError("Invalid page token, could not base64-decode");
  auto parsed = ParseJson(*json);
  if (!parsed.ok() || !parsed->is_object() || !parsed->contains("offset") ||
      !(*parsed)["offset"].is_number_integer()) {
    return absl::InvalidArgumentError("Invalid page token");
  }
  int64_t offset = (*parsed)["offset"].get<int64_t>();
  if (offset < 0) return absl::InvalidArgumentError("Invalid page token: negative offset");
  return offset;
}

}  // namespace cairn::registry
