#include "base/logging.h"

#include "base/env.h"
#include "base/testing.h"

namespace cairn {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

TEST(LoggingTest, ParseLevels) {
  EXPECT_EQ(*ParseLogLevel("info"), spdlog::level::info);
  EXPECT_EQ(*ParseLogLevel("WARNING"), spdlog::level::warn);
  EXPECT_EQ(*ParseLogLevel("off"), spdlog::level::off);
  EXPECT_THAT(ParseLogLevel("loud"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("loud")));
}

TEST(LoggingTest, BadLevelIsInvalidArgument) {
  EXPECT_THAT(InitLogging("verbose"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LoggingTest, WritesToLogFile) {
  ScopedTempDir tmp;
  const std::string path = tmp.path() + "/logs/cairn.log";
  ASSERT_OK(InitLogging("debug", path));
  spdlog::debug("hello {}", 42);
  spdlog::trace("not shown");
  spdlog::default_logger()->flush();
  auto env = NewPosixEnv();
  ASSERT_OK_AND_ASSIGN(std::string text, env->ReadFileToString(path));
  EXPECT_THAT(text, HasSubstr("hello 42"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("not shown")));
  ASSERT_OK(InitLogging("info"));  // Back to stderr only before the directory goes.
}

TEST(LoggingTest, UnopenableFileIsAnError) {
  EXPECT_THAT(InitLogging("info", "/proc/definitely/not/here.log"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/proc/definitely")));
}

}  // namespace
}  // namespace cairn
