#include "pipeline/cron.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/civil_time.h"
#include "base/testing.h"

namespace cairn::pipeline {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

absl::Time Utc(int64_t y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

// Next() of `expr` after `from`, as "YYYY-MM-DD HH:MM" (or "never").
std::string NextOf(std::string_view expr, absl::Time from) {
  absl::StatusOr<CronSchedule> s = CronSchedule::Parse(expr);
  if (!s.ok()) return "error: " + std::string(s.status().message());
  const absl::Time next = s->Next(from);
  if (next == absl::InfiniteFuture()) return "never";
  return absl::FormatTime("%Y-%m-%d %H:%M", next, absl::UTCTimeZone());
}

TEST(CronScheduleTest, DailyAtFixedTime) {
  EXPECT_EQ(NextOf("0 3 * * *", Utc(2024, 5, 10, 1, 0)), "2024-05-10 03:00");
  EXPECT_EQ(NextOf("0 3 * * *", Utc(2024, 5, 10, 3, 0)), "2024-05-11 03:00");  // strictly after
  EXPECT_EQ(NextOf("0 3 * * *", Utc(2024, 5, 10, 2, 59, 59)), "2024-05-10 03:00");
  EXPECT_EQ(NextOf("30 23 * * *", Utc(2024, 12, 31, 23, 30)), "2025-01-01 23:30");
}

TEST(CronScheduleTest, EveryMinuteIsTheNextWholeMinute) {
  EXPECT_EQ(NextOf("* * * * *", Utc(2024, 5, 10, 1, 0, 0)), "2024-05-10 01:01");
  EXPECT_EQ(NextOf("* * * * *", Utc(2024, 5, 10, 1, 0, 1)), "2024-05-10 01:01");
  EXPECT_EQ(NextOf("* * * * *", Utc(2024, 12, 31, 23, 59, 30)), "2025-01-01 00:00");
}

TEST(CronScheduleTest, RangesListsAndSteps) {
  EXPECT_EQ(NextOf("*/15 * * * *", Utc(2024, 5, 10, 1, 16)), "2024-05-10 01:30");
  EXPECT_EQ(NextOf("10-40/10 * * * *", Utc(2024, 5, 10, 1, 40)), "2024-05-10 02:10");
  EXPECT_EQ(NextOf("5,50 9-17 * * *", Utc(2024, 5, 10, 17, 50)), "2024-05-11 09:05");
  EXPECT_EQ(NextOf("0 0,12 * * *", Utc(2024, 5, 10, 0, 0)), "2024-05-10 12:00");
  EXPECT_EQ(NextOf("0 0 */10 * *", Utc(2024, 5, 11)), "2024-05-21 00:00");  // days 1, 11, 21, 31
}

TEST(CronScheduleTest, MonthAndDayNames) {
  // 2024-05-10 is a Friday.
  EXPECT_EQ(NextOf("0 9 * * MON-FRI", Utc(2024, 5, 10, 10)), "2024-05-13 09:00");
  EXPECT_EQ(NextOf("0 9 * * sat,Sun", Utc(2024, 5, 10, 10)), "2024-05-11 09:00");
  EXPECT_EQ(NextOf("0 0 1 jan,JUL *", Utc(2024, 5, 10)), "2024-07-01 00:00");
  EXPECT_EQ(NextOf("0 0 1 MAR-MAY *", Utc(2024, 5, 10)), "2025-03-01 00:00");
  EXPECT_EQ(NextOf("0 9 * * FRI-SUN", Utc(2024, 5, 11, 10)), "2024-05-12 09:00");  // SUN closes the range
}

TEST(CronScheduleTest, SundayIsZeroAndSeven) {
  // 2024-05-12 is a Sunday.
  EXPECT_EQ(NextOf("0 0 * * 0", Utc(2024, 5, 10)), "2024-05-12 00:00");
  EXPECT_EQ(NextOf("0 0 * * 7", Utc(2024, 5, 10)), "2024-05-12 00:00");
  EXPECT_EQ(NextOf("0 0 * * 5-7", Utc(2024, 5, 11, 1)), "2024-05-12 00:00");
  EXPECT_EQ(NextOf("0 0 * * 6-7", Utc(2024, 5, 10)), "2024-05-11 00:00");
}

TEST(CronScheduleTest, DayOfMonthOrDayOfWeekWhenBothRestricted) {
  // The 13th, or any Friday: from Sat 2024-05-11 the next is Mon 13th, then Fri 17th.
  EXPECT_EQ(NextOf("0 0 13 * FRI", Utc(2024, 5, 11)), "2024-05-13 00:00");
  EXPECT_EQ(NextOf("0 0 13 * FRI", Utc(2024, 5, 13)), "2024-05-17 00:00");
  // Day of week unrestricted: only the 13th.
  EXPECT_EQ(NextOf("0 0 13 * *", Utc(2024, 5, 13)), "2024-06-13 00:00");
  // Day of month unrestricted ("*" or "*/n"): both must match.
  EXPECT_EQ(NextOf("0 0 * * FRI", Utc(2024, 5, 11)), "2024-05-17 00:00");
  EXPECT_EQ(NextOf("0 0 */2 * FRI", Utc(2024, 5, 11)), "2024-05-17 00:00");  // 17 is odd: matches
  EXPECT_EQ(NextOf("0 0 */2 * FRI", Utc(2024, 5, 18)), "2024-05-31 00:00");  // 24th is even
}

TEST(CronScheduleTest, Macros) {
  const absl::Time from = Utc(2024, 5, 10, 10, 30);  // a Friday
  EXPECT_EQ(NextOf("@hourly", from), "2024-05-10 11:00");
  EXPECT_EQ(NextOf("@daily", from), "2024-05-11 00:00");
  EXPECT_EQ(NextOf("@midnight", from), "2024-05-11 00:00");
  EXPECT_EQ(NextOf("@weekly", from), "2024-05-12 00:00");
  EXPECT_EQ(NextOf("@monthly", from), "2024-06-01 00:00");
  EXPECT_EQ(NextOf("@yearly", from), "2025-01-01 00:00");
  EXPECT_EQ(NextOf("@annually", from), "2025-01-01 00:00");
}

TEST(CronScheduleTest, LeapDay) {
  EXPECT_EQ(NextOf("0 0 29 2 *", Utc(2024, 3, 1)), "2028-02-29 00:00");
  EXPECT_EQ(NextOf("0 0 29 2 *", Utc(2096, 3, 1)), "2104-02-29 00:00");  // 2100 is not a leap year
  EXPECT_EQ(NextOf("0 0 31 * *", Utc(2024, 4, 1)), "2024-05-31 00:00");
}

TEST(CronScheduleTest, ImpossibleSchedulesNeverFire) {
  EXPECT_EQ(NextOf("0 0 30 2 *", Utc(2024, 1, 1)), "never");
  EXPECT_EQ(NextOf("0 0 31 4,6,9,11 *", Utc(2024, 1, 1)), "never");
  // Either-or semantics: Feb 30th never comes, but Mondays in February do.
  EXPECT_EQ(NextOf("0 0 30 2 MON", Utc(2024, 1, 1)), "2024-02-05 00:00");
}

TEST(CronScheduleTest, InfiniteAndExtremeTimes) {
  ASSERT_OK_AND_ASSIGN(CronSchedule s, CronSchedule::Parse("0 3 * * *"));
  EXPECT_EQ(s.Next(absl::InfiniteFuture()), absl::InfiniteFuture());
  EXPECT_EQ(s.Next(absl::InfinitePast()), Utc(1, 1, 1, 3, 0));
  EXPECT_EQ(s.Next(Utc(-5000, 6, 1)), Utc(1, 1, 1, 3, 0));
  EXPECT_EQ(s.Next(Utc(100000000, 6, 1, 4)), Utc(100000000, 6, 2, 3, 0));
  EXPECT_GT(s.Next(Utc(2024, 1, 1)), Utc(2024, 1, 1));
}

TEST(CronScheduleTest, KeepsItsText) {
  ASSERT_OK_AND_ASSIGN(CronSchedule s, CronSchedule::Parse("0  3 * * *"));
  EXPECT_EQ(s.text(), "0  3 * * *");
}

TEST(CronScheduleTest, RejectsBadFieldsNamingThem) {
  EXPECT_THAT(CronSchedule::Parse("60 * * * *"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 1 (minute)")));
  EXPECT_THAT(CronSchedule::Parse("0 24 * * *"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 2 (hour)")));
  EXPECT_THAT(CronSchedule::Parse("0 0 32 * *"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cron field 3 (day of month): expected 1-31, a range a-b, a step */n or a-b/n, or a "
                                 "list of those, got \"32\"")));
  EXPECT_THAT(CronSchedule::Parse("0 0 0 * *"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 3 (day of month)")));
  EXPECT_THAT(CronSchedule::Parse("0 0 * 13 *"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 4 (month)")));
  EXPECT_THAT(CronSchedule::Parse("0 0 * FOO *"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 4 (month)")));
  EXPECT_THAT(CronSchedule::Parse("0 0 * * 8"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 5 (day of week)")));
  EXPECT_THAT(CronSchedule::Parse("0 0 * * JAN"),  // month names are not weekdays
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 5 (day of week)")));
}

TEST(CronScheduleTest, RejectsBadSyntax) {
  for (const char* bad : {"*/0 * * * *", "5-1 * * * *", "1-2-3 * * * *", ", * * * *", "1, * * * *", "*/ * * * *",
                          "5/10 * * * *", "-1 * * * *", "*/61 * * * *", "a * * * *", "001 * * * *", "*-5 * * * *"}) {
    EXPECT_THAT(CronSchedule::Parse(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cron field 1 (minute)")))
        << bad;
  }
}

TEST(CronScheduleTest, RejectsWrongFieldCountsAndMacros) {
  EXPECT_THAT(CronSchedule::Parse(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 5 fields")));
  EXPECT_THAT(CronSchedule::Parse("0 3 * *"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 4")));
  EXPECT_THAT(CronSchedule::Parse("0 3 * * * 2024"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 6")));
  EXPECT_THAT(CronSchedule::Parse("@reboot"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected @hourly")));
}

}  // namespace
}  // namespace cairn::pipeline
