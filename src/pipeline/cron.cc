#include "pipeline/cron.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <vector>

#include "absl/time/civil_time.h"

namespace cairn::pipeline {
namespace {

struct FieldRule {
  const char* name;
  int min;
  int max;
  // Names for the values min, min+1, ... (3 letters, upper case), or none.
  const std::array<std::string_view, 12>* names;
};

constexpr std::array<std::string_view, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 12> kDayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

const FieldRule kFields[5] = {
    {"minute", 0, 59, nullptr},     {"hour", 0, 23, nullptr},          {"day of month", 1, 31, nullptr},
    {"month", 1, 12, &kMonthNames}, {"day of week", 0, 7, &kDayNames},  // 7 is Sunday again
};

constexpr int kDayOfWeekField = 4;

// Long enough for any schedule that can match at all: every (month, day)
// that exists falls on every weekday within one 400-year Gregorian cycle.
constexpr int64_t kSearchYears = 401;

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 64)) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\u{:04x}", u);
    } else if (u >= 0x80) {  // cron text is ASCII; keep messages valid UTF-8
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (s.size() > 64) out += "...";
  return out + "\"";
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// A number or (for fields with names) a name; -1 if neither.
int ParseValue(std::string_view s, const FieldRule& rule) {
  if (s.empty()) return -1;
  if (s.size() <= 2 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int v = 0;
    for (char c : s) v = v * 10 + (c - '0');
    return v >= rule.min && v <= rule.max ? v : -1;
  }
  if (rule.names == nullptr || s.size() != 3) return -1;
  std::string upper(s);
  for (char& c : upper) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  for (size_t i = 0; i < rule.names->size(); ++i) {
    if (!(*rule.names)[i].empty() && (*rule.names)[i] == upper) return rule.min + static_cast<int>(i);
  }
  return -1;
}

// Parses one field into a bit set (bit v: value v matches).
absl::StatusOr<uint64_t> ParseField(std::string_view text, int index) {
  const FieldRule& rule = kFields[index];
  auto bad = [&] {
    return absl::InvalidArgumentError(fmt::format(
        "cron field {} ({}): expected {}-{}{}, a range a-b, a step */n or a-b/n, or a list of those, got {}", index + 1,
        rule.name, rule.min, rule.max, rule.names != nullptr ? " or a name" : "", Quote(text)));
  };
  uint64_t bits = 0;
  for (std::string_view item : Split(text, ',')) {
    std::string_view range = item;
    int step = 1;
    if (const size_t slash = item.find('/'); slash != std::string_view::npos) {
      range = item.substr(0, slash);
      const std::string_view step_text = item.substr(slash + 1);
      if (step_text.empty() || step_text.size() > 2 ||
          !std::all_of(step_text.begin(), step_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return bad();
      }
      step = 0;
      for (char c : step_text) step = step * 10 + (c - '0');
      if (step < 1 || step > rule.max - rule.min + 1) return bad();
      // "a/n" (no range) is not classic cron; say so rather than guess.
      if (range != "*" && range.find('-') == std::string_view::npos) return bad();
    }
    int lo = 0;
    int hi = 0;
    if (range == "*") {
      lo = rule.min;
      hi = rule.max;
      if (index == kDayOfWeekField) hi = 6;  // 7 would only repeat Sunday
    } else {
      const size_t dash = range.find('-');
      lo = ParseValue(range.substr(0, dash), rule);
      hi = dash == std::string_view::npos ? lo : ParseValue(range.substr(dash + 1), rule);
      if (lo < 0 || hi < 0) return bad();
      // "FRI-SUN": the name SUN closing a range means 7.
      if (index == kDayOfWeekField && dash != std::string_view::npos && hi == 0 && lo > 0) hi = 7;
      if (lo > hi) return bad();
    }
    for (int v = lo; v <= hi; v += step) bits |= uint64_t{1} << v;
  }
  if (index == kDayOfWeekField && (bits & (uint64_t{1} << 7)) != 0) bits = (bits | 1) & ~(uint64_t{1} << 7);
  return bits;
}

int DaysInMonth(int month, bool leap) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && leap ? 29 : kDays[month - 1];
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

absl::StatusOr<CronSchedule> CronSchedule::Parse(std::string_view text) {
  std::string_view expr = Trim(text);
  if (expr.starts_with('@')) {
    static constexpr std::pair<std::string_view, std::string_view> kMacros[] = {
        {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
        {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"},
    };
    std::string_view found;
    for (const auto& [name, expansion] : kMacros) {
      if (expr == name) found = expansion;
    }
    if (found.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("expected @hourly, @daily, @weekly, @monthly or @yearly, got {}", Quote(expr)));
    }
    expr = found;
  }
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < expr.size()) {
    while (i < expr.size() && (expr[i] == ' ' || expr[i] == '\t')) ++i;
    const size_t start = i;
    while (i < expr.size() && expr[i] != ' ' && expr[i] != '\t') ++i;
    if (i > start) fields.push_back(expr.substr(start, i - start));
  }
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(fmt::format(
        "expected 5 fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly, "
        "got {} in {}",
        fields.size(), Quote(text)));
  }
  uint64_t bits[5];
  for (int f = 0; f < 5; ++f) {
    ASSIGN_OR_RETURN(bits[f], ParseField(fields[f], f));
  }
  CronSchedule s;
  s.text_ = std::string(text);
  s.minutes_ = bits[0];
  s.hours_ = static_cast<uint32_t>(bits[1]);
  s.days_ = static_cast<uint32_t>(bits[2]);
  s.months_ = static_cast<uint32_t>(bits[3]);
  s.weekdays_ = static_cast<uint32_t>(bits[4]);
  s.days_restricted_ = !fields[2].starts_with('*');
  s.weekdays_restricted_ = !fields[4].starts_with('*');
  // With "either" semantics any week has a matching day. Otherwise some
  // month must have one of the days at all (every existing date falls on
  // every weekday in some year).
  if (!(s.days_restricted_ && s.weekdays_restricted_)) {
    s.possible_ = false;
    for (int m = 1; m <= 12; ++m) {
      if ((s.months_ >> m & 1) == 0) continue;
      for (int d = 1; d <= DaysInMonth(m, /*leap=*/true); ++d) {
        if ((s.days_ >> d & 1) != 0) s.possible_ = true;
      }
    }
  }
  return s;
}

bool CronSchedule::MatchesDay(int64_t year, int month, int day) const {
  const bool day_matches = (days_ >> day & 1) != 0;
  // absl counts Monday as 0; cron counts Sunday as 0.
  const int weekday = (static_cast<int>(absl::GetWeekday(absl::CivilDay(year, month, day))) + 1) % 7;
  const bool weekday_matches = (weekdays_ >> weekday & 1) != 0;
  if (days_restricted_ && weekdays_restricted_) return day_matches || weekday_matches;
  return day_matches && weekday_matches;
}

absl::Time CronSchedule::Next(absl::Time after) const {
  if (!possible_ || after == absl::InfiniteFuture()) return absl::InfiniteFuture();
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::Time earliest = absl::FromCivil(absl::CivilMinute(1, 1, 1, 0, 0), utc);
  if (after < earliest) after = earliest - absl::Minutes(1);
  absl::CivilMinute t = absl::ToCivilMinute(after, utc) + 1;
  const int64_t last_year = t.year() + kSearchYears;
  while (t.year() <= last_year) {
    if ((months_ >> t.month() & 1) == 0) {
      t = absl::CivilMinute(absl::CivilMonth(t) + 1);
      continue;
    }
    if (!MatchesDay(t.year(), t.month(), t.day())) {
      t = absl::CivilMinute(absl::CivilDay(t) + 1);
      continue;
    }
    if ((hours_ >> t.hour() & 1) == 0) {
      t = absl::CivilMinute(absl::CivilHour(t) + 1);
      continue;
    }
    if ((minutes_ >> t.minute() & 1) == 0) {
      t += 1;
      continue;
    }
    return absl::FromCivil(t, utc);
  }
  return absl::InfiniteFuture();
}

}  // namespace cairn::pipeline
