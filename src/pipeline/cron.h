// CronSchedule: a classic 5-field cron expression (the `triggers.cron` of a
// pipeline spec), evaluated in UTC, that answers "when is the next run?".
//
//   minute (0-59)  hour (0-23)  day-of-month (1-31)  month (1-12, JAN-DEC)
//   day-of-week (0-7, SUN-SAT; 0 and 7 are Sunday)
//
// Each field is `*`, a number or name, a range `a-b`, a step `*/n` or
// `a-b/n`, or a comma-separated list of those. Names are case-insensitive.
// As in Vixie cron, when both day-of-month and day-of-week are restricted (a
// field is restricted unless it starts with `*`), a day matches if EITHER
// matches; otherwise both must. `@hourly`, `@daily` (`@midnight`),
// `@weekly`, `@monthly` and `@yearly` (`@annually`) stand for the usual
// expressions. User-facing description: docs/pipelines.md.
//
// Thread-safety: an immutable value; const methods may be called from any
// thread.
//
// Usage:
//   ASSIGN_OR_RETURN(CronSchedule every_night, CronSchedule::Parse("0 3 * * *"));
//   absl::Time next = every_night.Next(absl::Now());   // 03:00 UTC today or tomorrow
//   if (next == absl::InfiniteFuture()) { /* never fires, e.g. "0 0 30 2 *" */ }
#ifndef CAIRN_PIPELINE_CRON_H_
#define CAIRN_PIPELINE_CRON_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "base/status.h"

namespace cairn::pipeline {

class CronSchedule {
 public:
  // kInvalidArgument naming the bad field ("cron field 3 (day of month):
  // expected ..., got \"32\"") or the wrong number of fields.
  static absl::StatusOr<CronSchedule> Parse(std::string_view text);

  // The first whole minute strictly after `after` that matches, or
  // absl::InfiniteFuture() if none ever does (e.g. February 30th) or
  // `after` is InfiniteFuture. Times before the year 1 count as the year 1.
  absl::Time Next(absl::Time after) const;

  // The text Parse was given.
  const std::string& text() const { return text_; }

 private:
  CronSchedule() = default;

  bool MatchesDay(int64_t year, int month, int day) const;

  std::string text_;
  uint64_t minutes_ = 0;   // bit m: minute m
  uint32_t hours_ = 0;     // bit h: hour h
  uint32_t days_ = 0;      // bit d: day of month d (1-31)
  uint32_t months_ = 0;    // bit m: month m (1-12)
  uint32_t weekdays_ = 0;  // bit w: day of week w (0 = Sunday .. 6)
  bool days_restricted_ = false;
  bool weekdays_restricted_ = false;
  bool possible_ = true;  // false: no date can ever match
};

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_CRON_H_
