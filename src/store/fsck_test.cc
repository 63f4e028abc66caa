#include "store/fsck.h"

#include "base/fault_injection_env.h"
#include "base/mem_env.h"
#include "base/testing.h"
#include "store/local_object_store.h"

namespace cairn::store {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using Kind = FsckProblem::Kind;

class FsckTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      env_ = NewPosixEnv();
      root_ = tmp_.path() + "/objects";
    } else {
      env_ = NewMemEnv();
      root_ = "/objects";
    }
    ASSERT_OK_AND_ASSIGN(store_, LocalObjectStore::Create(*env_, root_));
  }

  Digest Put(std::string_view data) {
    absl::StatusOr<Digest> d = store_->Put(data);
    EXPECT_OK(d.status());
    return *d;
  }

  ScopedTempDir tmp_;
  std::unique_ptr<Env> env_;
  std::string root_;
  std::unique_ptr<LocalObjectStore> store_;
};

TEST_P(FsckTest, CleanStoreHasNoProblems) {
  Put("");
  Put("one");
  Put(std::string(3 << 20, 'x'));
  std::vector<uint64_t> progress;
  ASSERT_OK_AND_ASSIGN(FsckReport r, FsckObjectStore(*env_, root_, [&](uint64_t done) { progress.push_back(done); }));
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.objects_checked, 3u);
  EXPECT_EQ(r.bytes_checked, 3u + (3u << 20));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), r.bytes_checked);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
}

TEST_P(FsckTest, EmptyStoreIsClean) {
  ASSERT_OK_AND_ASSIGN(FsckReport r, FsckObjectStore(*env_, root_));
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.objects_checked, 0u);
}

TEST_P(FsckTest, CorruptObjectIsReportedWithItsPath) {
  Put("good");
  Digest bad = Put("will be damaged");
  const std::string path = store_->ObjectPath(bad);
  ASSERT_OK(env_->WriteFileAtomic(path, "will be damageD"));
  ASSERT_OK_AND_ASSIGN(FsckReport r, FsckObjectStore(*env_, root_));
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].kind, Kind::kCorrupt);
  EXPECT_EQ(r.problems[0].path, path);
  EXPECT_THAT(r.problems[0].detail, HasSubstr(Sha256::Of("will be damageD").ToHex()));
  EXPECT_EQ(r.objects_checked, 2u);
}

TEST_P(FsckTest, BadNamesMisplacedAndStrayFiles) {
  Digest d = Put("object");
  const std::string hex = d.ToHex();
  const std::string shard = DirName(store_->ObjectPath(d));
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));

  ASSERT_OK(env_->WriteFileAtomic(shard + "/not-a-digest", "x"));
  ASSERT_OK(env_->WriteFileAtomic(shard + "/" + upper, "object"));
  ASSERT_OK(env_->CreateDirs(root_ + "/00/00"));
  ASSERT_OK(env_->WriteFileAtomic(root_ + "/00/00/" + hex, "object"));
  ASSERT_OK(env_->WriteFileAtomic(root_ + "/tmp/abc.tmp", "partial"));
  ASSERT_OK(env_->WriteFileAtomic(root_ + "/README", "x"));
  ASSERT_OK(env_->CreateDirs(root_ + "/XY"));
  ASSERT_OK(env_->WriteFileAtomic(root_ + "/00/stray", "x"));

  ASSERT_OK_AND_ASSIGN(FsckReport r, FsckObjectStore(*env_, root_));
  auto find = [&](const std::string& path) -> const FsckProblem* {
    for (const FsckProblem& p : r.problems) {
      if (p.path == path) return &p;
    }
    return nullptr;
  };
  ASSERT_EQ(r.problems.size(), 7u);
  auto expect = [&](const std::string& path, Kind kind) {
    const FsckProblem* p = find(path);
    ASSERT_NE(p, nullptr) << path;
    EXPECT_EQ(p->kind, kind) << path << ": " << p->detail;
    EXPECT_FALSE(p->detail.empty());
  };
  expect(shard + "/not-a-digest", Kind::kBadName);
  expect(shard + "/" + upper, Kind::kBadName);
  expect(root_ + "/00/00/" + hex, Kind::kMisplaced);
  expect(root_ + "/tmp/abc.tmp", Kind::kStrayTempFile);
  expect(root_ + "/README", Kind::kBadName);
  expect(root_ + "/XY", Kind::kBadName);
  expect(root_ + "/00/stray", Kind::kBadName);
  EXPECT_THAT(find(root_ + "/00/00/" + hex)->detail, HasSubstr(hex.substr(0, 2) + "/" + hex.substr(2, 2)));
  EXPECT_EQ(r.objects_checked, 1u);  // Only the correctly placed object is hashed.
}

TEST_P(FsckTest, MissingRootIsNotFound) {
  EXPECT_THAT(FsckObjectStore(*env_, root_ + "/nope"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(FsckTest, UnreadableObjectsAreReported) {
  Digest d = Put("object");
  FaultInjectionEnv faults(*env_);
  faults.FailAfter(FaultInjectionEnv::Op::kRead, 0, absl::InternalError("injected EIO"));
  ASSERT_OK_AND_ASSIGN(FsckReport r, FsckObjectStore(faults, root_));
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].kind, Kind::kUnreadable);
  EXPECT_EQ(r.problems[0].path, store_->ObjectPath(d));
  EXPECT_THAT(r.problems[0].detail, HasSubstr("EIO"));
}

TEST(FsckKindTest, Names) {
  EXPECT_EQ(FsckProblemKindName(Kind::kCorrupt), "corrupt");
  EXPECT_EQ(FsckProblemKindName(Kind::kStrayTempFile), "stray_temp_file");
}

INSTANTIATE_TEST_SUITE_P(Envs, FsckTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Posix" : "Mem"; });

}  // namespace
}  // namespace cairn::store
