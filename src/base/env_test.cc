// One suite run over every Env: PosixEnv in a temp dir and MemEnv.
#include "base/env.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "base/mem_env.h"
#include "base/testing.h"

namespace cairn {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

struct EnvFactory {
  std::string name;
  std::function<std::unique_ptr<Env>()> make;
  bool posix;
};

class EnvTest : public ::testing::TestWithParam<EnvFactory> {
 protected:
  void SetUp() override {
    env_ = GetParam().make();
    root_ = GetParam().posix ? tmp_.path() : "/memroot";
    ASSERT_OK(env_->CreateDirs(root_));
  }
  std::string P(std::string_view name) const { return JoinPath(root_, name); }

  ScopedTempDir tmp_;
  std::unique_ptr<Env> env_;
  std::string root_;
};

TEST_P(EnvTest, WriteThenReadBack) {
  ASSERT_OK_AND_ASSIGN(auto file, env_->NewWritableFile(P("a")));
  ASSERT_OK(file->Append("hello "));
  ASSERT_OK(file->Append("world"));
  ASSERT_OK(file->Sync());
  ASSERT_OK(file->Close());
  EXPECT_THAT(file->Append("x"), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(std::string s, env_->ReadFileToString(P("a")));
  EXPECT_EQ(s, "hello world");
  ASSERT_OK_AND_ASSIGN(uint64_t size, env_->GetFileSize(P("a")));
  EXPECT_EQ(size, 11u);
  EXPECT_TRUE(env_->FileExists(P("a")));
  EXPECT_FALSE(env_->FileExists(P("b")));
}

TEST_P(EnvTest, NewWritableFileTruncates) {
  ASSERT_OK(env_->WriteFileAtomic(P("a"), "long contents"));
  ASSERT_OK_AND_ASSIGN(auto file, env_->NewWritableFile(P("a")));
  ASSERT_OK(file->Append("new"));
  ASSERT_OK(file->Close());
  ASSERT_OK_AND_ASSIGN(std::string s, env_->ReadFileToString(P("a")));
  EXPECT_EQ(s, "new");
}

TEST_P(EnvTest, SequentialReadAndSkip) {
  ASSERT_OK(env_->WriteFileAtomic(P("s"), "0123456789"));
  ASSERT_OK_AND_ASSIGN(auto file, env_->NewSequentialFile(P("s")));
  char buf[4];
  ASSERT_OK_AND_ASSIGN(size_t n, file->Read(buf, 3));
  EXPECT_EQ(std::string(buf, n), "012");
  ASSERT_OK(file->Skip(4));
  ASSERT_OK_AND_ASSIGN(n, file->Read(buf, 4));
  EXPECT_EQ(std::string(buf, n), "789");
  ASSERT_OK_AND_ASSIGN(n, file->Read(buf, 4));
  EXPECT_EQ(n, 0u);
}

TEST_P(EnvTest, RandomAccessRead) {
  ASSERT_OK(env_->WriteFileAtomic(P("r"), "0123456789"));
  ASSERT_OK_AND_ASSIGN(auto file, env_->NewRandomAccessFile(P("r")));
  char buf[8];
  ASSERT_OK_AND_ASSIGN(size_t n, file->Read(5, buf, 3));
  EXPECT_EQ(std::string(buf, n), "567");
  ASSERT_OK_AND_ASSIGN(n, file->Read(8, buf, 8));  // Short read at the end.
  EXPECT_EQ(std::string(buf, n), "89");
  ASSERT_OK_AND_ASSIGN(n, file->Read(100, buf, 8));
  EXPECT_EQ(n, 0u);
}

TEST_P(EnvTest, ReadFileToStringLargerThanOneChunk) {
  std::string big(3 * (1 << 20) + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  ASSERT_OK(env_->WriteFileAtomic(P("big"), big));
  ASSERT_OK_AND_ASSIGN(std::string s, env_->ReadFileToString(P("big")));
  EXPECT_TRUE(s == big);
}

TEST_P(EnvTest, MissingFilesAreNotFoundAndNameThePath) {
  EXPECT_THAT(env_->NewSequentialFile(P("nope")), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(env_->NewRandomAccessFile(P("nope")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->GetFileSize(P("nope")), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(env_->DeleteFile(P("nope")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->RenameFile(P("nope"), P("x")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->GetChildren(P("nodir")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(env_->NewWritableFile(P("nodir/f")), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nodir")));
  EXPECT_THAT(env_->SyncDir(P("nodir")), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(EnvTest, CreateDirsIsRecursiveAndIdempotent) {
  ASSERT_OK(env_->CreateDirs(P("x/y/z")));
  ASSERT_OK(env_->CreateDirs(P("x/y/z")));
  ASSERT_OK(env_->CreateDirs(P("x/y/z/")));
  EXPECT_TRUE(env_->FileExists(P("x/y")));
  ASSERT_OK(env_->WriteFileAtomic(P("x/y/z/f"), "1"));
  ASSERT_OK(env_->SyncDir(P("x/y/z")));
  ASSERT_OK(env_->WriteFileAtomic(P("file"), "1"));
  EXPECT_THAT(env_->CreateDirs(P("file")), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_FALSE(env_->CreateDirs(P("file/sub")).ok());
}

TEST_P(EnvTest, GetChildrenReportsKindsAndSizes) {
  ASSERT_OK(env_->CreateDirs(P("d/sub")));
  ASSERT_OK(env_->CreateDirs(P("d/sub/deeper")));
  ASSERT_OK(env_->WriteFileAtomic(P("d/f1"), "abc"));
  ASSERT_OK(env_->WriteFileAtomic(P("d/sub/f2"), "abcdef"));
  ASSERT_OK_AND_ASSIGN(std::vector<FileInfo> kids, env_->GetChildren(P("d")));
  std::vector<std::string> names;
  for (const FileInfo& k : kids) {
    names.push_back(k.name);
    if (k.name == "f1") {
      EXPECT_FALSE(k.is_dir);
      EXPECT_EQ(k.size, 3u);
    }
    if (k.name == "sub") {
      EXPECT_TRUE(k.is_dir);
    }
  }
  EXPECT_THAT(names, UnorderedElementsAre("f1", "sub"));
}

TEST_P(EnvTest, DeleteFileAndDir) {
  ASSERT_OK(env_->CreateDirs(P("d")));
  ASSERT_OK(env_->WriteFileAtomic(P("d/f"), "x"));
  EXPECT_THAT(env_->DeleteDir(P("d")), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(env_->DeleteFile(P("d/f")));
  EXPECT_FALSE(env_->FileExists(P("d/f")));
  ASSERT_OK(env_->DeleteDir(P("d")));
  EXPECT_FALSE(env_->FileExists(P("d")));
  EXPECT_THAT(env_->DeleteDir(P("d")), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(EnvTest, RenameReplacesTarget) {
  ASSERT_OK(env_->WriteFileAtomic(P("from"), "new"));
  ASSERT_OK(env_->WriteFileAtomic(P("to"), "old"));
  ASSERT_OK(env_->RenameFile(P("from"), P("to")));
  EXPECT_FALSE(env_->FileExists(P("from")));
  ASSERT_OK_AND_ASSIGN(std::string s, env_->ReadFileToString(P("to")));
  EXPECT_EQ(s, "new");
}

TEST_P(EnvTest, WriteFileAtomicLeavesNoTempFiles) {
  ASSERT_OK(env_->WriteFileAtomic(P("a"), "1"));
  ASSERT_OK(env_->WriteFileAtomic(P("a"), "2"));
  ASSERT_OK_AND_ASSIGN(std::vector<FileInfo> kids, env_->GetChildren(root_));
  ASSERT_EQ(kids.size(), 1u);
  EXPECT_EQ(kids[0].name, "a");
  ASSERT_OK_AND_ASSIGN(std::string s, env_->ReadFileToString(P("a")));
  EXPECT_EQ(s, "2");
  EXPECT_THAT(env_->WriteFileAtomic(P("nodir/a"), "1"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(EnvTest, ClocksMove) {
  int64_t now = env_->NowMicros();
  EXPECT_GT(now, int64_t{1'600'000'000} * 1'000'000);  // After 2020.
  int64_t m0 = env_->MonotonicMicros();
  env_->SleepForMicros(2000);
  EXPECT_GE(env_->MonotonicMicros() - m0, 2000);
}

TEST_P(EnvTest, ConcurrentWritersToDistinctFiles) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string name = P("t" + std::to_string(t) + "_" + std::to_string(i));
        EXPECT_OK(env_->WriteFileAtomic(name, name));
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_OK_AND_ASSIGN(std::vector<FileInfo> kids, env_->GetChildren(root_));
  EXPECT_EQ(kids.size(), 80u);
  ASSERT_OK_AND_ASSIGN(std::string s, env_->ReadFileToString(P("t3_19")));
  EXPECT_EQ(s, P("t3_19"));
}

INSTANTIATE_TEST_SUITE_P(AllEnvs, EnvTest,
                         ::testing::Values(EnvFactory{"Posix", [] { return NewPosixEnv(); }, true},
                                           EnvFactory{"Mem", []() -> std::unique_ptr<Env> { return NewMemEnv(); },
                                                      false}),
                         [](const ::testing::TestParamInfo<EnvFactory>& info) { return info.param.name; });

// Posix-only: error mapping of permissions.
TEST(PosixEnvTest, PermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores permissions";
  ScopedTempDir tmp;
  auto env = NewPosixEnv();
  const std::string dir = JoinPath(tmp.path(), "ro");
  ASSERT_OK(env->CreateDirs(dir));
  ASSERT_EQ(::chmod(dir.c_str(), 0500), 0);
  EXPECT_THAT(env->NewWritableFile(JoinPath(dir, "f")), StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(dir)));
  ::chmod(dir.c_str(), 0700);
}

// MemEnv-only: crash simulation and fake clock.
TEST(MemEnvTest, DropUnsyncedDataKeepsOnlySyncedBytes) {
  auto env = NewMemEnv();
  ASSERT_OK(env->CreateDirs("/d"));
  ASSERT_OK_AND_ASSIGN(auto synced, env->NewWritableFile("/d/synced"));
  ASSERT_OK(synced->Append("durable"));
  ASSERT_OK(synced->Sync());
  ASSERT_OK(synced->Append("-lost"));
  ASSERT_OK_AND_ASSIGN(auto never, env->NewWritableFile("/d/never"));
  ASSERT_OK(never->Append("gone"));
  ASSERT_OK(env->WriteFileAtomic("/d/atomic", "kept"));

  env->DropUnsyncedData();

  ASSERT_OK_AND_ASSIGN(std::string s, env->ReadFileToString("/d/synced"));
  EXPECT_EQ(s, "durable");
  EXPECT_FALSE(env->FileExists("/d/never"));
  ASSERT_OK_AND_ASSIGN(s, env->ReadFileToString("/d/atomic"));
  EXPECT_EQ(s, "kept");
}

TEST(MemEnvTest, FakeClock) {
  auto env = NewMemEnv();
  env->SetNowMicros(1'000'000);
  EXPECT_EQ(env->NowMicros(), 1'000'000);
  int64_t m = env->MonotonicMicros();
  env->AdvanceMicros(500);
  EXPECT_EQ(env->NowMicros(), 1'000'500);
  EXPECT_EQ(env->MonotonicMicros(), m + 500);
  env->SleepForMicros(1'000'000'000);  // Returns at once: advances the fake clock.
  EXPECT_EQ(env->NowMicros(), 1'001'000'500);
}

TEST(MemEnvTest, PathsAreNormalised) {
  auto env = NewMemEnv();
  ASSERT_OK(env->CreateDirs("/a//b/"));
  ASSERT_OK(env->WriteFileAtomic("/a/b//f", "x"));
  EXPECT_TRUE(env->FileExists("/a/./b/f"));
  ASSERT_OK_AND_ASSIGN(auto kids, env->GetChildren("/a/"));
  ASSERT_EQ(kids.size(), 1u);
  EXPECT_EQ(kids[0].name, "b");
  EXPECT_EQ(env->TotalFileBytes(), 1u);
}

TEST(PathTest, JoinPath) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("a", "/b"), "a/b");
  EXPECT_EQ(JoinPath("/", "b"), "/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("a", ""), "a");
}

TEST(PathTest, DirName) {
  EXPECT_EQ(DirName("a/b/c"), "a/b");
  EXPECT_EQ(DirName("c"), ".");
  EXPECT_EQ(DirName("/c"), "/");
  EXPECT_EQ(DirName("/"), "/");
  EXPECT_EQ(DirName("a/b/"), "a");
  EXPECT_EQ(DirName("a//b"), "a");
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST(FindExecutableTest, FirstExecutableOnTheSearchPath) {
  EXPECT_EQ(FindExecutable("sh", "/nonexistent::/bin:/usr/bin"), "/bin/sh");
  EXPECT_EQ(FindExecutable("sh", "/usr/bin:/bin"), "/usr/bin/sh");
  EXPECT_EQ(FindExecutable("no-such-program-here", "/bin:/usr/bin"), "");
  EXPECT_EQ(FindExecutable("sh", ""), "");
  // A file that is not executable is not found.
  EXPECT_EQ(FindExecutable("passwd", "/etc"), "");
}

}  // namespace
}  // namespace cairn
