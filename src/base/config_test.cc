#include "base/config.h"

#include "base/mem_env.h"
#include "base/testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(env_->CreateDirs("/etc")); }
  Config::Sources Base() {
    Config::Sources s;
    s.defaults = {{"port", "5000"}, {"host", "127.0.0.1"}, {"data_dir", "./cairn-data"}, {"verbose", "false"}};
    return s;
  }
  std::unique_ptr<MemEnv> env_ = NewMemEnv();
};

TEST_F(ConfigTest, Precedence) {
  ASSERT_OK(env_->WriteFileAtomic("/etc/cairn.yaml", "port: 6000\nhost: 0.0.0.0\ndata_dir: /srv\n"));
  Config::Sources s = Base();
  s.file = "/etc/cairn.yaml";
  s.environment = {{"CAIRN_PORT", "7000"}, {"CAIRN_HOST", "10.0.0.1"}, {"PATH", "/bin"}};
  s.flags = {{"port", "8080"}};
  ASSERT_OK_AND_ASSIGN(Config c, Config::Load(*env_, s));

  EXPECT_EQ(*c.GetInt("port"), 8080);
  EXPECT_EQ(c.Source("port"), "flag");
  EXPECT_EQ(*c.GetString("host"), "10.0.0.1");
  EXPECT_EQ(c.Source("host"), "env");
  EXPECT_EQ(*c.GetString("data_dir"), "/srv");
  EXPECT_EQ(c.Source("data_dir"), "file");
  EXPECT_EQ(*c.GetBool("verbose"), false);
  EXPECT_EQ(c.Source("verbose"), "default");
  EXPECT_EQ(c.Source("nope"), "");
  EXPECT_THAT(c.GetString("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(c.Keys(), ElementsAre("data_dir", "host", "port", "verbose"));
}

TEST_F(ConfigTest, EachLayerAloneOverridesDefaults) {
  {
    ASSERT_OK_AND_ASSIGN(Config c, Config::Load(*env_, Base()));
    EXPECT_EQ(*c.GetInt("port"), 5000);
  }
  {
    Config::Sources s = Base();
    s.environment = {{"CAIRN_PORT", "7000"}};
    ASSERT_OK_AND_ASSIGN(Config c, Config::Load(*env_, s));
    EXPECT_EQ(*c.GetInt("port"), 7000);
  }
  {
    ASSERT_OK(env_->WriteFileAtomic("/etc/c.yaml", "port: 6000\n"));
    Config::Sources s = Base();
    s.file = "/etc/c.yaml";
    s.environment = {{"CAIRN_HOST", "h"}};
    ASSERT_OK_AND_ASSIGN(Config c, Config::Load(*env_, s));
    EXPECT_EQ(*c.GetInt("port"), 6000);
    EXPECT_EQ(*c.GetString("host"), "h");
  }
}

TEST_F(ConfigTest, GetIntNamesKeyAndSource) {
  Config::Sources s = Base();
  s.environment = {{"CAIRN_PORT", "80x"}};
  ASSERT_OK_AND_ASSIGN(Config c, Config::Load(*env_, s));
  EXPECT_THAT(c.GetInt("port"),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("'port'"), HasSubstr("CAIRN_PORT"))));
  EXPECT_THAT(c.GetBool("port"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ConfigTest, BadFilesAreInvalidArgumentNamingTheFile) {
  Config::Sources s = Base();
  s.file = "/etc/missing.yaml";
  EXPECT_THAT(Config::Load(*env_, s),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/etc/missing.yaml")));
  s.file_optional = true;
  EXPECT_TRUE(Config::Load(*env_, s).ok());

  s.file_optional = false;
  s.file = "/etc/bad.yaml";
  ASSERT_OK(env_->WriteFileAtomic("/etc/bad.yaml", "port: [1, 2\nhost: x\n"));
  EXPECT_THAT(Config::Load(*env_, s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/etc/bad.yaml")));

  ASSERT_OK(env_->WriteFileAtomic("/etc/bad.yaml", "- a\n- b\n"));
  EXPECT_THAT(Config::Load(*env_, s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("map")));

  ASSERT_OK(env_->WriteFileAtomic("/etc/bad.yaml", "port:\n  nested: 1\n"));
  EXPECT_THAT(Config::Load(*env_, s),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("'port'"), HasSubstr("line 1"))));

  ASSERT_OK(env_->WriteFileAtomic("/etc/bad.yaml", "prot: 1\n"));
  EXPECT_THAT(Config::Load(*env_, s),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("unknown setting 'prot'"),
                                                                HasSubstr("/etc/bad.yaml"))));

  ASSERT_OK(env_->WriteFileAtomic("/etc/empty.yaml", ""));
  s.file = "/etc/empty.yaml";
  ASSERT_OK_AND_ASSIGN(Config c, Config::Load(*env_, s));
  EXPECT_EQ(c.Source("port"), "default");
}

TEST_F(ConfigTest, UnknownFlagIsRejected) {
  Config::Sources s = Base();
  s.flags = {{"prot", "1"}};
  EXPECT_THAT(Config::Load(*env_, s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prot")));
}

TEST_F(ConfigTest, WithoutDefaultsEverythingIsAccepted) {
  ASSERT_OK(env_->WriteFileAtomic("/etc/c.yaml", "anything: yes\n"));
  Config::Sources s;
  s.file = "/etc/c.yaml";
  s.environment = {{"CAIRN_SOME_KEY", "v"}, {"HOME", "/root"}, {"CAIRN_", "ignored"}};
  ASSERT_OK_AND_ASSIGN(Config c, Config::Load(*env_, s));
  EXPECT_EQ(*c.GetString("some_key"), "v");
  EXPECT_EQ(*c.GetBool("anything"), true);
  EXPECT_THAT(c.Keys(), ElementsAre("anything", "some_key"));
}

TEST(ConfigEnvNameTest, EnvVarName) {
  EXPECT_EQ(Config::EnvVarName("tracking_uri"), "CAIRN_TRACKING_URI");
  EXPECT_EQ(Config::EnvVarName("log-level"), "CAIRN_LOG_LEVEL");
  EXPECT_EQ(Config::EnvVarName("a.b"), "CAIRN_A_B");
}

TEST(ConfigEnvNameTest, ProcessEnvironmentReadsEnviron) {
  ::setenv("CAIRN_CONFIG_TEST_VAR", "42", 1);
  auto env = Config::ProcessEnvironment();
  EXPECT_EQ(env["CAIRN_CONFIG_TEST_VAR"], "42");
  ::unsetenv("CAIRN_CONFIG_TEST_VAR");
}

}  // namespace
}  // namespace cairn
