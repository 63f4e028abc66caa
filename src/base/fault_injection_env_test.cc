#include "base/fault_injection_env.h"

#include <thread>

#include "base/mem_env.h"
#include "base/testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;
using Op = FaultInjectionEnv::Op;
using ::testing::HasSubstr;

class FaultInjectionEnvTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(env_.CreateDirs("/d")); }
  std::unique_ptr<MemEnv> mem_ = NewMemEnv();
  FaultInjectionEnv env_{*mem_};
};

TEST_F(FaultInjectionEnvTest, PassesThroughWhenNoFailureIsSet) {
  ASSERT_OK(env_.WriteFileAtomic("/d/f", "data"));
  ASSERT_OK_AND_ASSIGN(std::string s, env_.ReadFileToString("/d/f"));
  EXPECT_EQ(s, "data");
  EXPECT_EQ(env_.CallCount(Op::kCreate), 1);
  EXPECT_EQ(env_.CallCount(Op::kAppend), 1);
  EXPECT_EQ(env_.CallCount(Op::kSync), 1);
  EXPECT_EQ(env_.CallCount(Op::kRename), 1);
  EXPECT_EQ(env_.CallCount(Op::kSyncDir), 1);
  EXPECT_GE(env_.CallCount(Op::kRead), 1);
}

TEST_F(FaultInjectionEnvTest, FailAfterLetsNCallsThroughThenFailsUntilReset) {
  env_.FailAfter(Op::kAppend, 2, absl::DataLossError("injected"));
  ASSERT_OK_AND_ASSIGN(auto f, env_.NewWritableFile("/d/f"));
  EXPECT_OK(f->Append("a"));
  EXPECT_OK(f->Append("b"));
  EXPECT_THAT(f->Append("c"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("injected")));
  EXPECT_THAT(f->Append("d"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(env_.CallCount(Op::kAppend), 4);
  ASSERT_OK(f->Close());
  // Failed calls never reach the underlying Env.
  ASSERT_OK_AND_ASSIGN(std::string s, mem_->ReadFileToString("/d/f"));
  EXPECT_EQ(s, "ab");
  env_.Reset();
  EXPECT_EQ(env_.CallCount(Op::kAppend), 0);
  ASSERT_OK(env_.WriteFileAtomic("/d/g", "ok"));
}

TEST_F(FaultInjectionEnvTest, EachOpCanFail) {
  const absl::Status err = absl::InternalError("boom");
  ASSERT_OK(env_.WriteFileAtomic("/d/f", "x"));

  env_.FailAfter(Op::kCreate, 0, err);
  EXPECT_THAT(env_.NewWritableFile("/d/g"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_FALSE(mem_->FileExists("/d/g"));
  env_.ClearFailure(Op::kCreate);

  env_.FailAfter(Op::kSync, 0, err);
  EXPECT_THAT(env_.WriteFileAtomic("/d/g", "y"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_FALSE(env_.FileExists("/d/g"));
  env_.ClearFailure(Op::kSync);

  env_.FailAfter(Op::kRename, 0, err);
  EXPECT_THAT(env_.RenameFile("/d/f", "/d/h"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_TRUE(env_.FileExists("/d/f"));
  env_.ClearFailure(Op::kRename);

  env_.FailAfter(Op::kRead, 0, err);
  EXPECT_THAT(env_.ReadFileToString("/d/f"), StatusIs(absl::StatusCode::kInternal));
  ASSERT_OK_AND_ASSIGN(auto raf, env_.NewRandomAccessFile("/d/f"));
  char c;
  EXPECT_THAT(raf->Read(0, &c, 1), StatusIs(absl::StatusCode::kInternal));
  env_.ClearFailure(Op::kRead);

  env_.FailAfter(Op::kDeleteFile, 0, err);
  EXPECT_THAT(env_.DeleteFile("/d/f"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_TRUE(env_.FileExists("/d/f"));
  env_.ClearFailure(Op::kDeleteFile);

  env_.FailAfter(Op::kSyncDir, 0, err);
  EXPECT_THAT(env_.SyncDir("/d"), StatusIs(absl::StatusCode::kInternal));
  env_.ClearFailure(Op::kSyncDir);

  env_.FailAfter(Op::kCreateDirs, 0, err);
  EXPECT_THAT(env_.CreateDirs("/d/e"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_FALSE(env_.FileExists("/d/e"));
  env_.ClearFailure(Op::kCreateDirs);

  ASSERT_OK(env_.WriteFileAtomic("/d/g", "works again"));
}

TEST_F(FaultInjectionEnvTest, NoSpace) {
  env_.FailWritesWithNoSpace();
  EXPECT_THAT(env_.WriteFileAtomic("/d/f", "x"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("No space")));
  EXPECT_FALSE(env_.FileExists("/d/f"));
  env_.Reset();
  EXPECT_OK(env_.WriteFileAtomic("/d/f", "x"));
}

TEST_F(FaultInjectionEnvTest, CountsAreThreadSafe) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) EXPECT_OK(env_.SyncDir("/d"));
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(env_.CallCount(Op::kSyncDir), 4000);
}

TEST(FaultInjectionOpTest, Names) {
  EXPECT_EQ(FaultInjectionEnv::OpName(Op::kSyncDir), "sync_dir");
  EXPECT_EQ(FaultInjectionEnv::OpName(Op::kCreate), "create");
}

}  // namespace
}  // namespace cairn
