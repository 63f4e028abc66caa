// The `cairn` command line as a user runs it: embedded mode on a data
// directory, --json output, exit codes and one-line errors, and `cairn fsck`
// finding a damaged object.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/json.h"
#include "base/testing.h"
#include "tests/support/server_process.h"

namespace cairn {
namespace {

using ::cairn::testing::CairnBinary;
using ::cairn::testing::CommandResult;
using ::cairn::testing::RunCommand;
using ::testing::HasSubstr;

class CliTest : public ::testing::Test {
 protected:
  CommandResult Cairn(std::vector<std::string> args) {
    args.insert(args.begin(), {CairnBinary(), "--data-dir", data_});
    return RunCommand(args);
  }
  cairn::testing::ScopedTempDir tmp_;
  std::string data_ = tmp_.path() + "/data";
};

TEST_F(CliTest, CreatesAndListsExperimentsEmbedded) {
  CommandResult created = Cairn({"experiments", "create", "churn"});
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_THAT(created.output, HasSubstr("created experiment 'churn' with id 1"));
  CommandResult listed = Cairn({"--json", "experiments", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  auto json = ParseJson(listed.output);
  ASSERT_TRUE(json.ok()) << listed.output;
  ASSERT_EQ(json->size(), 2u);  // Default and churn
  std::vector<std::string> names;
  for (const Json& e : *json) names.push_back(e["name"]);
  EXPECT_THAT(names, ::testing::UnorderedElementsAre("Default", "churn"));
  CommandResult table = Cairn({"experiments", "list"});
  EXPECT_THAT(table.output, HasSubstr("churn"));
  EXPECT_THAT(table.output, HasSubstr("ARTIFACT LOCATION"));
}

TEST_F(CliTest, ErrorsAreOneLineWithNonZeroExit) {
  CommandResult dup = Cairn({"experiments", "create", "x"});
  ASSERT_EQ(dup.exit_code, 0);
  CommandResult again = Cairn({"experiments", "create", "x"});
  EXPECT_EQ(again.exit_code, 1);
  CommandResult missing = Cairn({"runs", "show", "0123456789abcdef0123456789abcdef"});
  EXPECT_EQ(missing.exit_code, 1);
  CommandResult bad_filter = Cairn({"runs", "search", "--filter", "metrics.a >"});
  EXPECT_EQ(bad_filter.exit_code, 1);
  CommandResult usage = Cairn({"runs", "frobnicate"});
  EXPECT_EQ(usage.exit_code, 2);
  CommandResult help = RunCommand({CairnBinary(), "runs", "search", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output, HasSubstr("--filter"));
}

TEST_F(CliTest, FsckReportsADamagedObject) {
  // An artifact through the embedded API is not possible from the CLI, so put
  // an object into the store by hand, the way the server lays them out.
  ASSERT_EQ(Cairn({"experiments", "list"}).exit_code, 0);  // creates the data directory
  CommandResult clean = Cairn({"fsck"});
  EXPECT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_THAT(clean.output, HasSubstr("clean"));

  std::string hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";  // sha256("hello")
  std::filesystem::create_directories(data_ + "/objects/2c/f2");
  std::ofstream(data_ + "/objects/2c/f2/" + hex) << "hellO";
  CommandResult damaged = Cairn({"fsck"});
  EXPECT_EQ(damaged.exit_code, 1) << damaged.output;
  EXPECT_THAT(damaged.output, HasSubstr(hex));
  EXPECT_THAT(damaged.output, HasSubstr("1 problem(s) found"));
}

}  // namespace
}  // namespace cairn
