#include "tracking/search_filter.h"

#include <fmt/format.h>

#include <charconv>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "base/quoted.h"

namespace cairn::tracking {
namespace {

// ---------------------------------------------------------------------------
// Small helpers.

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::Status InvalidAt(std::string_view message, size_t pos) {
  return absl::InvalidArgumentError(fmt::format("{} (at position {})", message, pos));
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
// sqlparse's name characters, plus any non-ASCII byte (part of a UTF-8
// letter; the input is validated as UTF-8 first).
bool IsWordChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || IsDigit(c) || c == '_' || c == '$' || c == '#' ||
         u >= 0x80;
}
char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

// Quotes `s` for an error message, shortening very long input.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 120;
  if (s.size() <= kMax) return fmt::format("'{}'", s);
  // Cut on a UTF-8 boundary so the message stays valid UTF-8.
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return fmt::format("'{}...'", s.substr(0, cut));
}

// Outside input must be UTF-8 without NUL: the databases reject anything else
// with errors that would not read as the user's mistake.
absl::Status CheckText(std::string_view s, std::string_view what) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return InvalidAt(fmt::format("Invalid {}: NUL character", what), i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return InvalidAt(fmt::format("Invalid {}: not valid UTF-8", what), i);
    }
    if (i + len > s.size()) return InvalidAt(fmt::format("Invalid {}: not valid UTF-8", what), i);
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return InvalidAt(fmt::format("Invalid {}: not valid UTF-8", what), i);
      cp = (cp << 6) | (cc & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return InvalidAt(fmt::format("Invalid {}: not valid UTF-8", what), i);
    }
    i += len;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// The vocabulary of each search domain.

struct AttributeSpec {
  std::string_view name;    // canonical name
  std::string_view column;  // column of the domain's table
  bool numeric;
  bool nullable;
  bool searchable;
  bool list_ok;  // IN / NOT IN with a list
};

struct AttributeAlias {
  std::string_view alias;
  std::string_view name;
  bool orderable;
};

struct EntityName {
  std::string_view name;
  EntityType type;
};

struct Domain {
  std::string_view what;   // "run" / "experiment", for messages
  std::string_view table;  // table of the enclosing query
  std::span<const EntityName> entities;
  std::span<const AttributeSpec> attributes;
  std::span<const AttributeAlias> aliases;
};

constexpr EntityName kRunEntities[] = {
    {"metric", EntityType::kMetric},
    {"metrics", EntityType::kMetric},
    {"parameter", EntityType::kParam},
    {"parameters", EntityType::kParam},
    {"param", EntityType::kParam},
    {"params", EntityType::kParam},
    {"tag", EntityType::kTag},
    {"tags", EntityType::kTag},
    {"attribute", EntityType::kAttribute},
    {"attributes", EntityType::kAttribute},
    {"attr", EntityType::kAttribute},
    {"run", EntityType::kAttribute},
    {"dataset", EntityType::kDataset},
    {"datasets", EntityType::kDataset},
};

constexpr AttributeSpec kRunAttributes[] = {
    // name, column, numeric, nullable, searchable, list_ok
    {"artifact_uri", "artifact_uri", false, false, true, false},
    {"end_time", "end_time", true, true, true, false},
    {"run_id", "run_uuid", false, false, true, true},
    {"run_name", "name", false, false, true, false},
    {"start_time", "start_time", true, true, true, false},
    {"status", "status", false, false, true, false},
    {"user_id", "user_id", false, false, true, false},
};

constexpr AttributeAlias kRunAliases[] = {
    {"created", "start_time", true}, {"Created", "start_time", true}, {"run name", "run_name", false},
    {"Run name", "run_name", false}, {"Run Name", "run_name", false},
};

constexpr EntityName kExperimentEntities[] = {
    {"attribute", EntityType::kAttribute},
    {"attributes", EntityType::kAttribute},
    {"tag", EntityType::kTag},
    {"tags", EntityType::kTag},
};

constexpr AttributeSpec kExperimentAttributes[] = {
    {"creation_time", "creation_time", true, false, true, false},
    {"experiment_id", "experiment_id", true, false, false, false},
    {"last_update_time", "last_update_time", true, false, true, false},
    {"name", "name", false, false, true, false},
};

constexpr Domain kRunDomain = {"run", "runs", kRunEntities, kRunAttributes, kRunAliases};
constexpr Domain kExperimentDomain = {"experiment", "experiments", kExperimentEntities, kExperimentAttributes, {}};

std::string_view EntityLabel(EntityType type) {
  switch (type) {
    case EntityType::kMetric:
      return "metric";
    case EntityType::kParam:
      return "parameter";
    case EntityType::kTag:
      return "tag";
    case EntityType::kAttribute:
      return "attribute";
    case EntityType::kDataset:
      return "dataset";
  }
  return "?";
}

std::string EntityList(const Domain& domain) {
  // The canonical names, as MLflow lists them.
  std::string out = "[";
  bool first = true;
  for (EntityType t :
       {EntityType::kMetric, EntityType::kParam, EntityType::kTag, EntityType::kAttribute, EntityType::kDataset}) {
    bool present = false;
    for (const auto& e : domain.entities) present = present || e.type == t;
    if (!present) continue;
    out += fmt::format("{}'{}'", first ? "" : ", ", EntityLabel(t));
    first = false;
  }
  return out + "]";
}

std::optional<EntityType> LookupEntity(const Domain& domain, std::string_view name) {
  for (const auto& e : domain.entities) {
    if (e.name == name) return e.type;
  }
  return std::nullopt;
}

const AttributeSpec* LookupAttribute(const Domain& domain, std::string_view name) {
  for (const auto& a : domain.attributes) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

// Resolves aliases; nullptr when `key` names no attribute usable for the purpose.
const AttributeSpec* ResolveAttribute(const Domain& domain, std::string_view key, bool for_order_by) {
  for (const auto& alias : domain.aliases) {
    if (alias.alias == key) {
      if (for_order_by && !alias.orderable) return nullptr;
      return LookupAttribute(domain, alias.name);
    }
  }
  const AttributeSpec* spec = LookupAttribute(domain, key);
  if (spec != nullptr && !for_order_by && !spec->searchable) return nullptr;
  return spec;
}

std::string AttributeList(const Domain& domain, bool for_order_by) {
  std::vector<std::string_view> names;
  for (const auto& a : domain.attributes) {
    if (for_order_by || a.searchable) names.push_back(a.name);
  }
  for (const auto& alias : domain.aliases) {
    if (!for_order_by || alias.orderable) names.push_back(alias.alias);
  }
  return fmt::format("['{}']", fmt::join(names, "', '"));
}

// ---------------------------------------------------------------------------
// Lexical layer: a cursor over the input with the grammar's token readers.

struct RawIdentifier {
  std::optional<std::string> entity;  // absent: bare key (an attribute)
  std::string key;
  size_t pos = 0;
  std::string_view text;  // as written
};

enum class ValueKind { kString, kNumber, kList, kBareWord, kBackticked };

struct RawValue {
  ValueKind kind = ValueKind::kString;
  std::string text;               // unquoted string, number text, or the bare word
  std::vector<std::string> list;  // kList
  size_t pos = 0;
};

class Cursor {
 public:
  explicit Cursor(std::string_view in) : in_(in) {}

  size_t pos() const { return pos_; }
  bool AtEnd() const { return pos_ >= in_.size(); }
  char Peek(size_t ahead = 0) const { return pos_ + ahead < in_.size() ? in_[pos_ + ahead] : '\0'; }
  std::string_view Rest() const { return in_.substr(pos_); }

  void SkipSpace() {
    while (!AtEnd() && IsSpace(in_[pos_])) ++pos_;
  }

  // The word at the cursor (maybe empty), without consuming it.
  std::string_view PeekWord() const {
    size_t end = pos_;
    while (end < in_.size() && IsWordChar(in_[end])) ++end;
    return in_.substr(pos_, end - pos_);
  }

  // Consumes `keyword` (case-insensitive) if it is the whole word at the cursor.
  bool ConsumeKeyword(std::string_view keyword) {
    if (!EqualsIgnoreCase(PeekWord(), keyword)) return false;
    pos_ += keyword.size();
    return true;
  }

  // A `quoted` run with the quote char doubled inside; the cursor is on the
  // opening quote.
  absl::StatusOr<std::string> ReadQuoted() {
    const size_t start = pos_;
    std::optional<std::string> s = cairn::ReadQuoted(in_, &pos_, Backslash::kLiteral);
    if (!s) return InvalidAt(fmt::format("Unclosed quote {} in {}", in_[start], Quote(in_.substr(start))), start);
    return *std::move(s);
  }

  // `[ entity . ] key` (see the header for the forms).
  absl::StatusOr<RawIdentifier> ReadIdentifier() {
    RawIdentifier id;
    id.pos = pos_;
    if (AtEnd()) return InvalidAt("Expected an identifier, found end of input", pos_);
    std::string first;
    const char c = Peek();
    if (c == '`' || c == '"') {
      ASSIGN_OR_RETURN(first, ReadQuoted());
    } else if (IsWordChar(c)) {
      const std::string_view w = PeekWord();
      first = std::string(w);
      pos_ += w.size();
    } else {
      return InvalidAt(fmt::format("Invalid clause(s) in filter string: {}; expected an identifier such as "
                                   "metrics.<key>, params.<key>, tags.<key> or an attribute",
                                   Quote(Rest())),
                       pos_);
    }
    if (Peek() != '.') {
      id.key = std::move(first);
      id.text = in_.substr(id.pos, pos_ - id.pos);
      return id;
    }
    ++pos_;  // '.'
    id.entity = std::move(first);
    const char k = Peek();
    if (k == '`' || k == '"') {
      ASSIGN_OR_RETURN(id.key, ReadQuoted());
    } else {
      // word { '.' word }: keys such as `mlflow.runName` need no quotes.
      const size_t key_start = pos_;
      while (true) {
        const std::string_view w = PeekWord();
        if (w.empty()) {
          return InvalidAt(
              fmt::format("Invalid identifier {}: expected a key after '.'", Quote(in_.substr(id.pos, pos_ - id.pos))),
              pos_);
        }
        pos_ += w.size();
        if (Peek() != '.') break;
        ++pos_;
      }
      id.key = std::string(in_.substr(key_start, pos_ - key_start));
    }
    id.text = in_.substr(id.pos, pos_ - id.pos);
    return id;
  }

  absl::StatusOr<Comparator> ReadComparator(std::string_view identifier_text) {
    const size_t start = pos_;
    if (AtEnd()) {
      return InvalidAt(fmt::format("Invalid comparison clause: expected a comparator after {}", Quote(identifier_text)),
                       pos_);
    }
    auto two = Rest().substr(0, 2);
    if (two == "!=") {
      pos_ += 2;
      return Comparator::kNe;
    }
    if (two == "<=") {
      pos_ += 2;
      return Comparator::kLe;
    }
    if (two == ">=") {
      pos_ += 2;
      return Comparator::kGe;
    }
    if (two == "<>" || two == "==") {
      return InvalidAt(fmt::format("Invalid comparator '{}'; use one of =, !=, <, <=, >, >=, LIKE, ILIKE, IN, "
                                   "NOT IN",
                                   two),
                       start);
    }
    switch (Peek()) {
      case '<':
        ++pos_;
        return Comparator::kLt;
      case '>':
        ++pos_;
        return Comparator::kGt;
      case '=':
        ++pos_;
        return Comparator::kEq;
      default:
        break;
    }
    if (ConsumeKeyword("LIKE")) return Comparator::kLike;
    if (ConsumeKeyword("ILIKE")) return Comparator::kILike;
    if (ConsumeKeyword("IN")) return Comparator::kIn;
    if (EqualsIgnoreCase(PeekWord(), "NOT")) {
      const size_t save = pos_;
      pos_ += 3;
      SkipSpace();
      if (ConsumeKeyword("IN")) return Comparator::kNotIn;
      pos_ = save;
      return InvalidAt(
          fmt::format("Invalid comparator {}; NOT is only supported as NOT IN", Quote(Rest().substr(0, 12))), start);
    }
    const std::string_view word = PeekWord();
    return InvalidAt(fmt::format("Invalid comparison clause after {}: expected a comparator "
                                 "(=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN), found {}",
                                 Quote(identifier_text), Quote(word.empty() ? Rest().substr(0, 1) : word)),
                     start);
  }

  absl::StatusOr<RawValue> ReadValue() {
    RawValue v;
    v.pos = pos_;
    if (AtEnd()) return InvalidAt("Invalid comparison clause: missing value", pos_);
    const char c = Peek();
    if (c == '\'' || c == '"') {
      v.kind = ValueKind::kString;
      ASSIGN_OR_RETURN(v.text, ReadQuoted());
      return v;
    }
    if (c == '`') {
      v.kind = ValueKind::kBackticked;
      ASSIGN_OR_RETURN(v.text, ReadQuoted());
      return v;
    }
    if (c == '(') return ReadList();
    if (IsDigit(c) || c == '.' || c == '-' || c == '+') return ReadNumber();
    if (IsWordChar(c)) {
      v.kind = ValueKind::kBareWord;
      size_t end = pos_;
      while (end < in_.size() && (IsWordChar(in_[end]) || in_[end] == '.')) ++end;
      v.text = std::string(in_.substr(pos_, end - pos_));
      pos_ = end;
      return v;
    }
    return InvalidAt(fmt::format("Invalid comparison clause: expected a value, found {}", Quote(Rest())), pos_);
  }

 private:
  // [+-] ( digits [ . digits* ] | . digits ) [ (e|E) [+-] digits ]
  absl::StatusOr<RawValue> ReadNumber() {
    RawValue v;
    v.kind = ValueKind::kNumber;
    v.pos = pos_;
    size_t p = pos_;
    if (in_[p] == '+' || in_[p] == '-') ++p;
    size_t int_digits = 0, frac_digits = 0;
    while (p < in_.size() && IsDigit(in_[p])) ++p, ++int_digits;
    if (p < in_.size() && in_[p] == '.') {
      ++p;
      while (p < in_.size() && IsDigit(in_[p])) ++p, ++frac_digits;
    }
    if (int_digits + frac_digits == 0) {
      return InvalidAt(fmt::format("Invalid numeric value {}", Quote(in_.substr(pos_, p - pos_ + 1))), pos_);
    }
    if (p < in_.size() && (in_[p] == 'e' || in_[p] == 'E')) {
      size_t q = p + 1;
      if (q < in_.size() && (in_[q] == '+' || in_[q] == '-')) ++q;
      size_t exp_digits = 0;
      while (q < in_.size() && IsDigit(in_[q])) ++q, ++exp_digits;
      if (exp_digits == 0) {
        return InvalidAt(fmt::format("Invalid numeric value {}", Quote(in_.substr(pos_, q - pos_))), pos_);
      }
      p = q;
    }
    if (p < in_.size() && (IsWordChar(in_[p]) || in_[p] == '.')) {
      size_t end = p;
      while (end < in_.size() && (IsWordChar(in_[end]) || in_[end] == '.')) ++end;
      return InvalidAt(fmt::format("Invalid numeric value {}", Quote(in_.substr(pos_, end - pos_))), pos_);
    }
    v.text = std::string(in_.substr(pos_, p - pos_));
    pos_ = p;
    return v;
  }

  // ( 'a' { , 'b' } )
  absl::StatusOr<RawValue> ReadList() {
    RawValue v;
    v.kind = ValueKind::kList;
    v.pos = pos_;
    ++pos_;  // '('
    SkipSpace();
    if (Peek() == ')') {
      return InvalidAt(
          "While parsing a list in the query, expected a non-empty list of string values, but got "
          "empty list",
          v.pos);
    }
    while (true) {
      SkipSpace();
      if (Peek() != '\'' && Peek() != '"') {
        return InvalidAt(fmt::format("While parsing a list in the query, expected a quoted string value, "
                                     "found {}",
                                     AtEnd() ? std::string("end of input") : Quote(Rest())),
                         pos_);
      }
      ASSIGN_OR_RETURN(std::string item, ReadQuoted());
      v.list.push_back(std::move(item));
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() == ')') {
        ++pos_;
        return v;
      }
      return InvalidAt(fmt::format("While parsing a list in the query, expected ',' or ')', found {}",
                                   AtEnd() ? std::string("end of input") : Quote(Rest())),
                       pos_);
    }
  }

  std::string_view in_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// Semantic layer: raw clause -> FilterClause, with MLflow's rules.

constexpr Comparator kNumericComparators[] = {Comparator::kEq, Comparator::kNe, Comparator::kLt,
                                              Comparator::kLe, Comparator::kGt, Comparator::kGe};
constexpr Comparator kStringComparators[] = {Comparator::kEq, Comparator::kNe, Comparator::kLike, Comparator::kILike};
constexpr Comparator kListStringComparators[] = {Comparator::kEq,    Comparator::kNe, Comparator::kLike,
                                                 Comparator::kILike, Comparator::kIn, Comparator::kNotIn};

std::string ComparatorList(std::span<const Comparator> allowed) {
  std::vector<std::string_view> names;
  for (Comparator c : allowed) names.push_back(ComparatorName(c));
  return fmt::format("{}", fmt::join(names, ", "));
}

absl::Status CheckComparator(Comparator c, std::span<const Comparator> allowed, std::string_view subject, size_t pos) {
  for (Comparator a : allowed) {
    if (a == c) return absl::OkStatus();
  }
  return InvalidAt(fmt::format("Invalid comparator '{}' for {}; expected one of {}", ComparatorName(c), subject,
                               ComparatorList(allowed)),
                   pos);
}

std::string DescribeValue(const RawValue& v) {
  switch (v.kind) {
    case ValueKind::kString:
      return Quote(v.text);
    case ValueKind::kBackticked:
      return fmt::format("`{}`", v.text);
    case ValueKind::kList:
      return "a list";
    case ValueKind::kNumber:
    case ValueKind::kBareWord:
      return v.text;
  }
  return "?";
}

// A number literal (already validated by the lexer) as double.
absl::StatusOr<double> ToDouble(const RawValue& v) {
  std::string_view t = v.text;
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  double d = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
  if (ec != std::errc() || ptr != t.data() + t.size()) {
    return InvalidAt(fmt::format("Numeric value {} is out of range", v.text), v.pos);
  }
  return d;
}

// An integer literal that fits int64 stays exact; anything else is a double.
absl::StatusOr<FilterValue> ToNumber(const RawValue& v) {
  std::string_view t = v.text;
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  if (t.find_first_of(".eE") == std::string_view::npos) {
    int64_t i = 0;
    const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), i);
    if (ec == std::errc() && ptr == t.data() + t.size()) return FilterValue(i);
  }
  ASSIGN_OR_RETURN(double d, ToDouble(v));
  return FilterValue(d);
}

absl::StatusOr<std::string> ExpectString(const RawValue& v, std::string_view subject) {
  if (v.kind == ValueKind::kString) return v.text;
  if (v.kind == ValueKind::kBareWord || v.kind == ValueKind::kBackticked) {
    return InvalidAt(fmt::format("Value {} for {} is either not quoted or unidentified quote types used for "
                                 "string value. Use either single or double quotes",
                                 DescribeValue(v), subject),
                     v.pos);
  }
  return InvalidAt(
      fmt::format("Expected a quoted string value for {} (e.g. 'my-value'). Got value {}", subject, DescribeValue(v)),
      v.pos);
}

// Resolves `[entity.]key` for a domain. `for_order_by` selects the order_by
// attribute set.
struct ResolvedIdentifier {
  EntityType entity;
  std::string key;
  const AttributeSpec* attribute = nullptr;  // for kAttribute
};

absl::StatusOr<ResolvedIdentifier> Resolve(const Domain& domain, const RawIdentifier& id, bool for_order_by) {
  ResolvedIdentifier r{EntityType::kAttribute, id.key, nullptr};
  if (id.entity.has_value()) {
    std::optional<EntityType> type = LookupEntity(domain, *id.entity);
    if (!type.has_value()) {
      return InvalidAt(
          fmt::format("Invalid entity type {}. Valid values are {}", Quote(*id.entity), EntityList(domain)), id.pos);
    }
    r.entity = *type;
  }
  if (id.key.empty()) return InvalidAt(fmt::format("Invalid identifier {}: empty key", Quote(id.text)), id.pos);
  if (r.entity == EntityType::kAttribute) {
    r.attribute = ResolveAttribute(domain, id.key, for_order_by);
    if (r.attribute == nullptr) {
      return InvalidAt(fmt::format("Invalid attribute key {} specified. Valid keys are '{}'", Quote(id.key),
                                   AttributeList(domain, for_order_by)),
                       id.pos);
    }
    r.key = std::string(r.attribute->name);
  } else if (r.entity == EntityType::kDataset) {
    if (id.key != "name" && id.key != "digest" && id.key != "context") {
      return InvalidAt(fmt::format("Invalid dataset key {} specified. Valid keys are '['name', 'digest', "
                                   "'context']'",
                                   Quote(id.key)),
                       id.pos);
    }
  }
  return r;
}

absl::StatusOr<FilterClause> MakeClause(const Domain& domain, const RawIdentifier& id, Comparator comparator,
                                        size_t comparator_pos, const RawValue& value) {
  ASSIGN_OR_RETURN(ResolvedIdentifier r, Resolve(domain, id, /*for_order_by=*/false));
  FilterClause clause;
  clause.entity = r.entity;
  clause.key = r.key;
  clause.comparator = comparator;
  const std::string subject = fmt::format("{} {}", EntityLabel(r.entity), Quote(r.key));

  const bool numeric = r.entity == EntityType::kMetric || (r.entity == EntityType::kAttribute && r.attribute->numeric);
  if (numeric) {
    RETURN_IF_ERROR(CheckComparator(comparator, kNumericComparators, subject, comparator_pos));
    if (value.kind != ValueKind::kNumber) {
      return InvalidAt(fmt::format("Expected numeric value type for {}. Found {}", subject, DescribeValue(value)),
                       value.pos);
    }
    if (r.entity == EntityType::kMetric) {
      ASSIGN_OR_RETURN(double d, ToDouble(value));
      clause.value = d;
    } else {
      ASSIGN_OR_RETURN(clause.value, ToNumber(value));
    }
    return clause;
  }

  const bool list_ok = r.entity == EntityType::kDataset || (r.entity == EntityType::kAttribute && r.attribute->list_ok);
  RETURN_IF_ERROR(CheckComparator(comparator,
                                  list_ok ? std::span<const Comparator>(kListStringComparators) : kStringComparators,
                                  subject, comparator_pos));
  const bool wants_list = comparator == Comparator::kIn || comparator == Comparator::kNotIn;
  if (wants_list) {
    if (value.kind != ValueKind::kList) {
      return InvalidAt(fmt::format("Expected a list of quoted string values for {} {} (e.g. ('a', 'b')). Got "
                                   "value {}",
                                   ComparatorName(comparator), subject, DescribeValue(value)),
                       value.pos);
    }
    clause.value = value.list;
    return clause;
  }
  if (value.kind == ValueKind::kList) {
    return InvalidAt(fmt::format("A list of values is only supported with IN and NOT IN (for {})", subject), value.pos);
  }
  ASSIGN_OR_RETURN(std::string s, ExpectString(value, subject));
  clause.value = std::move(s);
  return clause;
}

absl::StatusOr<std::vector<FilterClause>> ParseFilter(const Domain& domain, std::string_view filter) {
  RETURN_IF_ERROR(CheckText(filter, "filter string"));
  std::vector<FilterClause> clauses;
  Cursor cur(filter);
  cur.SkipSpace();
  if (cur.AtEnd()) return clauses;
  while (true) {
    ASSIGN_OR_RETURN(RawIdentifier id, cur.ReadIdentifier());
    cur.SkipSpace();
    const size_t comparator_pos = cur.pos();
    ASSIGN_OR_RETURN(Comparator comparator, cur.ReadComparator(id.text));
    cur.SkipSpace();
    ASSIGN_OR_RETURN(RawValue value, cur.ReadValue());
    ASSIGN_OR_RETURN(FilterClause clause, MakeClause(domain, id, comparator, comparator_pos, value));
    clauses.push_back(std::move(clause));

    const size_t before_space = cur.pos();
    cur.SkipSpace();
    if (cur.AtEnd()) return clauses;
    const size_t at = cur.pos();
    if (cur.pos() == before_space) {
      return InvalidAt(fmt::format("Invalid clause(s) in filter string: {}; expected AND", Quote(cur.Rest())), at);
    }
    if (EqualsIgnoreCase(cur.PeekWord(), "OR")) {
      return InvalidAt(fmt::format("Invalid clause(s) in filter string: {}. OR is not supported: combine "
                                   "comparisons with AND only",
                                   Quote(cur.Rest())),
                       at);
    }
    if (!cur.ConsumeKeyword("AND")) {
      return InvalidAt(fmt::format("Invalid clause(s) in filter string: {}; expected AND", Quote(cur.Rest())), at);
    }
    const size_t after_and = cur.pos();
    cur.SkipSpace();
    if (cur.AtEnd()) return InvalidAt("Invalid filter string: expected a comparison after AND", after_and);
    if (cur.pos() == after_and) {
      return InvalidAt(fmt::format("Invalid clause(s) in filter string: {}", Quote(filter.substr(at))), at);
    }
  }
}

absl::StatusOr<OrderByClause> ParseOrderBy(const Domain& domain, std::string_view order_by) {
  RETURN_IF_ERROR(CheckText(order_by, "order_by clause"));
  const auto cannot_parse = [&] {
    return Invalid(fmt::format("Invalid order_by clause {}. Could not be parsed.", Quote(order_by)));
  };
  Cursor cur(order_by);
  cur.SkipSpace();
  if (cur.AtEnd()) return cannot_parse();
  auto id_or = cur.ReadIdentifier();
  if (!id_or.ok()) {
    return Invalid(fmt::format("Invalid order_by clause {}. Could not be parsed: {}", Quote(order_by),
                               std::string(id_or.status().message())));
  }
  const RawIdentifier& id = *id_or;
  OrderByClause clause;
  const size_t before_space = cur.pos();
  cur.SkipSpace();
  if (!cur.AtEnd()) {
    if (cur.pos() == before_space) return cannot_parse();
    if (cur.ConsumeKeyword("ASC")) {
      clause.ascending = true;
    } else if (cur.ConsumeKeyword("DESC")) {
      clause.ascending = false;
    } else if (!cur.PeekWord().empty()) {
      return Invalid(fmt::format("Invalid ordering key in order_by clause {}.", Quote(order_by)));
    } else {
      return cannot_parse();
    }
    cur.SkipSpace();
    if (!cur.AtEnd()) return cannot_parse();
  }
  auto r = Resolve(domain, id, /*for_order_by=*/true);
  if (!r.ok()) {
    return Invalid(fmt::format("Invalid order_by clause {}: {}", Quote(order_by), std::string(r.status().message())));
  }
  if (r->entity == EntityType::kDataset || (domain.table == "experiments" && r->entity != EntityType::kAttribute)) {
    return Invalid(fmt::format("Invalid order_by entity: {} (in {})", EntityLabel(r->entity), Quote(order_by)));
  }
  clause.entity = r->entity;
  clause.key = std::move(r->key);
  return clause;
}

// ---------------------------------------------------------------------------
// SQL generation.

class SqlWriter {
 public:
  SqlWriter& operator<<(std::string_view s) {
    frag_.sql += s;
    return *this;
  }
  SqlWriter& Param(SqlValue v) {
    frag_.sql += '?';
    frag_.params.push_back(std::move(v));
    return *this;
  }
  bool empty() const { return frag_.sql.empty(); }
  SqlFragment Take() { return std::move(frag_); }

 private:
  SqlFragment frag_;
};

// A LIKE pattern as a sequence of literal bytes and wildcards, so that it can
// be rendered for either database. `\x` is a literal x; a trailing `\` is a
// literal backslash.
struct PatternItem {
  enum Kind { kLiteral, kAnyOne, kAnyMany } kind;
  char c;
};

std::vector<PatternItem> ParseLikePattern(std::string_view pattern) {
  std::vector<PatternItem> items;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      items.push_back({PatternItem::kLiteral, i + 1 < pattern.size() ? pattern[++i] : '\\'});
    } else if (c == '%') {
      items.push_back({PatternItem::kAnyMany, c});
    } else if (c == '_') {
      items.push_back({PatternItem::kAnyOne, c});
    } else {
      items.push_back({PatternItem::kLiteral, c});
    }
  }
  return items;
}

// PostgreSQL LIKE/ILIKE with the default escape character (backslash).
std::string RenderPostgresLike(const std::vector<PatternItem>& items) {
  std::string out;
  for (const auto& it : items) {
    switch (it.kind) {
      case PatternItem::kAnyMany:
        out += '%';
        break;
      case PatternItem::kAnyOne:
        out += '_';
        break;
      case PatternItem::kLiteral:
        if (it.c == '%' || it.c == '_' || it.c == '\\') out += '\\';
        out += it.c;
        break;
    }
  }
  return out;
}

// SQLite GLOB: `*`, `?`, and `[c]` for a literal metacharacter.
std::string RenderGlob(const std::vector<PatternItem>& items, bool lower) {
  std::string out;
  for (const auto& it : items) {
    switch (it.kind) {
      case PatternItem::kAnyMany:
        out += '*';
        break;
      case PatternItem::kAnyOne:
        out += '?';
        break;
      case PatternItem::kLiteral:
        if (it.c == '*' || it.c == '?' || it.c == '[') {
          out += '[';
          out += it.c;
          out += ']';
        } else {
          out += lower ? AsciiLower(it.c) : it.c;
        }
        break;
    }
  }
  return out;
}

absl::Status CheckValueShape(const FilterClause& c) {
  const bool is_list = std::holds_alternative<std::vector<std::string>>(c.value);
  const bool is_string = std::holds_alternative<std::string>(c.value);
  const bool wants_list = c.comparator == Comparator::kIn || c.comparator == Comparator::kNotIn;
  if (wants_list != is_list)
    return Invalid(fmt::format("Invalid value for {} on key '{}'", ComparatorName(c.comparator), c.key));
  if (wants_list && std::get<std::vector<std::string>>(c.value).empty()) {
    return Invalid(fmt::format("Empty list for {} on key '{}'", ComparatorName(c.comparator), c.key));
  }
  if ((c.comparator == Comparator::kLike || c.comparator == Comparator::kILike) && !is_string) {
    return Invalid(fmt::format("{} needs a string pattern (key '{}')", ComparatorName(c.comparator), c.key));
  }
  return absl::OkStatus();
}

SqlValue ToSqlValue(const FilterValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::get<std::string>(v);
}

// `column <comparator> value` for the dialect. REQUIRES: CheckValueShape(c).
void WriteComparison(SqlWriter& w, std::string_view column, const FilterClause& c, SqlDialect dialect) {
  switch (c.comparator) {
    case Comparator::kLike:
    case Comparator::kILike: {
      const auto items = ParseLikePattern(std::get<std::string>(c.value));
      const bool ci = c.comparator == Comparator::kILike;
      if (dialect == SqlDialect::kPostgres) {
        w << column << (ci ? " ILIKE " : " LIKE ");
        w.Param(RenderPostgresLike(items));
      } else {
        if (ci) {
          w << "lower(" << column << ") GLOB ";
        } else {
          w << column << " GLOB ";
        }
        w.Param(RenderGlob(items, ci));
      }
      return;
    }
    case Comparator::kIn:
    case Comparator::kNotIn: {
      w << column << (c.comparator == Comparator::kIn ? " IN (" : " NOT IN (");
      bool first = true;
      for (const auto& s : std::get<std::vector<std::string>>(c.value)) {
        if (!first) w << ", ";
        first = false;
        w.Param(s);
      }
      w << ")";
      return;
    }
    default:
      break;
  }
  std::string_view op = "=";
  switch (c.comparator) {
    case Comparator::kEq:
      op = "=";
      break;
    case Comparator::kNe:
      op = "<>";
      break;
    case Comparator::kLt:
      op = "<";
      break;
    case Comparator::kLe:
      op = "<=";
      break;
    case Comparator::kGt:
      op = ">";
      break;
    case Comparator::kGe:
      op = ">=";
      break;
    default:
      break;
  }
  w << column << " " << op << " ";
  w.Param(ToSqlValue(c.value));
}

// Re-checks a (possibly hand-built) clause against the domain's rules.
absl::Status ValidateClause(const Domain& domain, const FilterClause& c, const AttributeSpec** attribute) {
  *attribute = nullptr;
  bool entity_ok = false;
  for (const auto& e : domain.entities) entity_ok = entity_ok || e.type == c.entity;
  if (!entity_ok)
    return Invalid(fmt::format("Invalid entity type '{}' for {} search", EntityLabel(c.entity), domain.what));
  if (c.key.empty()) return Invalid("Invalid filter clause: empty key");
  RETURN_IF_ERROR(CheckValueShape(c));
  const bool is_number = std::holds_alternative<int64_t>(c.value) || std::holds_alternative<double>(c.value);
  const std::string subject = fmt::format("{} '{}'", EntityLabel(c.entity), c.key);
  bool numeric = c.entity == EntityType::kMetric;
  bool list_ok = c.entity == EntityType::kDataset;
  if (c.entity == EntityType::kAttribute) {
    *attribute = ResolveAttribute(domain, c.key, /*for_order_by=*/false);
    if (*attribute == nullptr) return Invalid(fmt::format("Invalid attribute key '{}'", c.key));
    numeric = (*attribute)->numeric;
    list_ok = (*attribute)->list_ok;
  } else if (c.entity == EntityType::kDataset && c.key != "name" && c.key != "digest" && c.key != "context") {
    return Invalid(fmt::format("Invalid dataset key '{}'", c.key));
  }
  if (numeric) {
    RETURN_IF_ERROR(CheckComparator(c.comparator, kNumericComparators, subject, 0));
    if (!is_number) return Invalid(fmt::format("Expected numeric value for {}", subject));
  } else {
    RETURN_IF_ERROR(CheckComparator(
        c.comparator, list_ok ? std::span<const Comparator>(kListStringComparators) : kStringComparators, subject, 0));
    if (is_number) return Invalid(fmt::format("Expected a string value for {}", subject));
  }
  return absl::OkStatus();
}

absl::StatusOr<SqlFragment> FilterToSql(const Domain& domain, const std::vector<FilterClause>& clauses,
                                        SqlDialect dialect) {
  SqlWriter w;
  if (clauses.empty()) {
    w << "1 = 1";
    return w.Take();
  }
  const std::string table(domain.table);
  // One clause drives the search through its (key, value) index: the one
  // likely to match fewest rows — an equality on a param or tag, else a
  // metric comparison, else any param or tag clause. The others are checked
  // per candidate (correlated EXISTS, a primary-key probe each), which costs
  // far less than materialising every clause's matches.
  auto rank = [](const FilterClause& c) {
    if ((c.entity == EntityType::kParam || c.entity == EntityType::kTag) && c.comparator == Comparator::kEq) return 3;
    if (c.entity == EntityType::kMetric && c.comparator != Comparator::kNe) return 2;
    if ((c.entity == EntityType::kParam || c.entity == EntityType::kTag) && c.comparator != Comparator::kNe) return 1;
    return 0;
  };
  size_t driver = clauses.size();
  for (size_t i = 0; i < clauses.size(); ++i) {
    if (rank(clauses[i]) > 0 && (driver == clauses.size() || rank(clauses[i]) > rank(clauses[driver]))) driver = i;
  }
  for (size_t i = 0; i < clauses.size(); ++i) {
    const FilterClause& c = clauses[i];
    const AttributeSpec* attribute = nullptr;
    const bool drives = i == driver;
    RETURN_IF_ERROR(ValidateClause(domain, c, &attribute));
    if (i > 0) w << " AND ";
    switch (c.entity) {
      case EntityType::kAttribute:
        WriteComparison(w, fmt::format("{}.{}", table, attribute->column), c, dialect);
        break;
      case EntityType::kMetric: {
        // NaN is stored as value NULL with is_nan = 1: it fails every
        // comparison except !=, as NaN does in IEEE arithmetic.
        const std::string a = fmt::format("m{}", i);
        if (drives) {
          w << "runs.run_uuid IN (SELECT " << a << ".run_uuid FROM latest_metrics " << a << " WHERE " << a
            << ".key = ";
        } else {
          w << "EXISTS (SELECT 1 FROM latest_metrics " << a << " WHERE " << a << ".run_uuid = runs.run_uuid AND "
            << a << ".key = ";
        }
        w.Param(c.key);
        w << " AND ";
        if (c.comparator == Comparator::kNe) {
          w << "(";
          WriteComparison(w, a + ".value", c, dialect);
          w << " OR " << a << ".is_nan <> 0)";
        } else {
          WriteComparison(w, a + ".value", c, dialect);
        }
        w << ")";
        break;
      }
      case EntityType::kParam:
      case EntityType::kTag: {
        const bool experiment = domain.table == "experiments";
        const std::string a = fmt::format("{}{}", c.entity == EntityType::kParam ? "p" : "t", i);
        const std::string_view from = experiment                       ? "experiment_tags"
                                      : c.entity == EntityType::kParam ? "params"
                                                                       : "tags";
        const std::string_view id_column = experiment ? "experiment_id" : "run_uuid";
        if (drives || experiment) {
          w << table << "." << id_column << " IN (SELECT " << a << "." << id_column << " FROM " << from << " " << a
            << " WHERE " << a << ".key = ";
        } else {
          w << "EXISTS (SELECT 1 FROM " << from << " " << a << " WHERE " << a << "." << id_column << " = " << table
            << "." << id_column << " AND " << a << ".key = ";
        }
        w.Param(c.key);
        w << " AND ";
        WriteComparison(w, a + ".value", c, dialect);
        w << ")";
        break;
      }
      case EntityType::kDataset: {
        const std::string ri = fmt::format("i{}", i);
        const std::string d = fmt::format("d{}", i);
        if (c.key == "context") {
          w << "EXISTS (SELECT 1 FROM run_inputs " << ri << " WHERE " << ri << ".run_uuid = runs.run_uuid AND ";
          WriteComparison(w, ri + ".context", c, dialect);
        } else {
          w << "EXISTS (SELECT 1 FROM run_inputs " << ri << " JOIN datasets " << d << " ON " << d
            << ".dataset_uuid = " << ri << ".dataset_uuid WHERE " << ri << ".run_uuid = runs.run_uuid AND ";
          WriteComparison(w, fmt::format("{}.{}", d, c.key), c, dialect);
        }
        w << ")";
        break;
      }
    }
  }
  SqlFragment out = w.Take();
  out.has_driver = driver < clauses.size() && domain.table == "runs";
  return out;
}

std::string_view TextCollation(SqlDialect dialect) { return dialect == SqlDialect::kPostgres ? " COLLATE \"C\"" : ""; }
std::string_view Direction(bool ascending) { return ascending ? " ASC" : " DESC"; }

}  // namespace

std::string_view ComparatorName(Comparator comparator) {
  switch (comparator) {
    case Comparator::kEq:
      return "=";
    case Comparator::kNe:
      return "!=";
    case Comparator::kLt:
      return "<";
    case Comparator::kLe:
      return "<=";
    case Comparator::kGt:
      return ">";
    case Comparator::kGe:
      return ">=";
    case Comparator::kLike:
      return "LIKE";
    case Comparator::kILike:
      return "ILIKE";
    case Comparator::kIn:
      return "IN";
    case Comparator::kNotIn:
      return "NOT IN";
  }
  return "?";
}

absl::StatusOr<RunFilter> ParseRunFilter(std::string_view filter) {
  ASSIGN_OR_RETURN(auto clauses, ParseFilter(kRunDomain, filter));
  return RunFilter{std::move(clauses)};
}

absl::StatusOr<SqlFragment> RunFilterToSql(const RunFilter& filter, SqlDialect dialect) {
  return FilterToSql(kRunDomain, filter.clauses, dialect);
}

absl::StatusOr<OrderByClause> ParseRunOrderBy(std::string_view order_by) { return ParseOrderBy(kRunDomain, order_by); }

absl::StatusOr<SqlFragment> RunOrderByToSql(const std::vector<std::string>& order_by, SqlDialect dialect) {
  SqlWriter w;
  std::vector<std::pair<EntityType, std::string>> seen;
  bool has_start_time = false;
  bool has_run_id = false;
  for (size_t i = 0; i < order_by.size(); ++i) {
    ASSIGN_OR_RETURN(OrderByClause c, ParseRunOrderBy(order_by[i]));
    for (const auto& s : seen) {
      if (s.first == c.entity && s.second == c.key) {
        return Invalid(fmt::format("`order_by` contains duplicate fields: [{}]",
                                   fmt::format("'{}'", fmt::join(order_by, "', '"))));
      }
    }
    seen.emplace_back(c.entity, c.key);
    if (i > 0) w << ", ";
    const std::string a = fmt::format("o{}", i);
    switch (c.entity) {
      case EntityType::kAttribute: {
        const AttributeSpec* spec = LookupAttribute(kRunDomain, c.key);
        // ParseRunOrderBy only yields known attributes.
        const std::string column = fmt::format("runs.{}", spec->column);
        has_start_time = has_start_time || c.key == "start_time";
        has_run_id = has_run_id || c.key == "run_id";
        if (spec->nullable) w << "CASE WHEN " << column << " IS NULL THEN 1 ELSE 0 END, ";
        w << column << (spec->numeric ? "" : TextCollation(dialect)) << Direction(c.ascending);
        break;
      }
      case EntityType::kMetric: {
        // Values first, then NaN, then runs without the metric (MLflow's rule),
        // whatever the direction.
        const std::string where =
            fmt::format("FROM latest_metrics {0} WHERE {0}.run_uuid = runs.run_uuid AND {0}.key = ", a);
        w << "COALESCE((SELECT CASE WHEN " << a << ".is_nan <> 0 THEN 1 WHEN " << a
          << ".value IS NULL THEN 2 ELSE 0 END " << where;
        w.Param(c.key);
        w << "), 2), (SELECT " << a << ".value " << where;
        w.Param(c.key);
        w << ")" << Direction(c.ascending);
        break;
      }
      case EntityType::kParam:
      case EntityType::kTag: {
        const std::string where = fmt::format("FROM {1} {0} WHERE {0}.run_uuid = runs.run_uuid AND {0}.key = ", a,
                                              c.entity == EntityType::kParam ? "params" : "tags");
        w << "CASE WHEN EXISTS (SELECT 1 " << where;
        w.Param(c.key);
        w << ") THEN 0 ELSE 1 END, (SELECT " << a << ".value " << where;
        w.Param(c.key);
        w << ")" << TextCollation(dialect) << Direction(c.ascending);
        break;
      }
      case EntityType::kDataset:
        return Invalid("Invalid order_by entity: dataset");  // rejected by the parser already
    }
  }
  if (!has_start_time) {
    if (!w.empty()) w << ", ";
    w << "CASE WHEN runs.start_time IS NULL THEN 1 ELSE 0 END, runs.start_time DESC";
  }
  if (!has_run_id) {
    if (!w.empty()) w << ", ";
    w << "runs.run_uuid" << TextCollation(dialect) << " ASC";
  }
  return w.Take();
}

absl::StatusOr<ExperimentFilter> ParseExperimentFilter(std::string_view filter) {
  ASSIGN_OR_RETURN(auto clauses, ParseFilter(kExperimentDomain, filter));
  return ExperimentFilter{std::move(clauses)};
}

absl::StatusOr<SqlFragment> ExperimentFilterToSql(const ExperimentFilter& filter, SqlDialect dialect) {
  return FilterToSql(kExperimentDomain, filter.clauses, dialect);
}

absl::StatusOr<OrderByClause> ParseExperimentOrderBy(std::string_view order_by) {
  return ParseOrderBy(kExperimentDomain, order_by);
}

absl::StatusOr<SqlFragment> ExperimentOrderByToSql(const std::vector<std::string>& order_by, SqlDialect dialect) {
  SqlWriter w;
  if (order_by.empty()) {
    // MLflow's default for experiments/search.
    w << "experiments.creation_time DESC, experiments.experiment_id ASC";
    return w.Take();
  }
  std::vector<std::string> seen;
  bool has_id = false;
  for (size_t i = 0; i < order_by.size(); ++i) {
    ASSIGN_OR_RETURN(OrderByClause c, ParseExperimentOrderBy(order_by[i]));
    for (const auto& s : seen) {
      if (s == c.key) {
        return Invalid(fmt::format("`order_by` contains duplicate fields: [{}]",
                                   fmt::format("'{}'", fmt::join(order_by, "', '"))));
      }
    }
    seen.push_back(c.key);
    const AttributeSpec* spec = LookupAttribute(kExperimentDomain, c.key);
    has_id = has_id || c.key == "experiment_id";
    if (i > 0) w << ", ";
    w << "experiments." << spec->column << (spec->numeric ? "" : TextCollation(dialect)) << Direction(c.ascending);
  }
  if (!has_id) w << ", experiments.experiment_id DESC";  // MLflow's tie-breaker
  return w.Take();
}

}  // namespace cairn::tracking
