// LocalObjectStore: the shared ObjectStore suite over PosixEnv and MemEnv,
// plus tests of the local layout, temp-file handling and crash behaviour.
#include <algorithm>

#include "store/fsck.h"
#include "store/local_object_store.h"

#include "base/mem_env.h"
#include "store/object_store_test.h"

namespace cairn::store {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;

// A LocalObjectStore on `base` (Posix in a temp dir, or Mem), seen through a
// FaultInjectionEnv.
class LocalHarness : public ObjectStoreHarness {
 public:
  explicit LocalHarness(bool posix) {
    if (posix) {
      tmp_ = std::make_unique<ScopedTempDir>();
      base_ = NewPosixEnv();
      root_ = tmp_->path() + "/objects";
    } else {
      auto mem = NewMemEnv();
      mem_ = mem.get();
      base_ = std::move(mem);
      root_ = "/data/objects";
    }
    faults_ = std::make_unique<FaultInjectionEnv>(*base_);
    auto store = LocalObjectStore::Create(*faults_, root_);
    if (!store.ok()) std::abort();
    store_ = std::move(*store);
  }

  ObjectStore& store() override { return *store_; }
  LocalObjectStore& local() { return *store_; }
  Env& base_env() { return *base_; }
  MemEnv* mem() { return mem_; }
  const std::string& root() const { return root_; }

  absl::Status FlipByteForTest(const Digest& digest, uint64_t offset) override {
    return Rewrite(digest, [&](std::string& s) { s[offset] = static_cast<char>(s[offset] ^ 0x01); });
  }
  absl::Status TruncateForTest(const Digest& digest, uint64_t size) override {
    return Rewrite(digest, [&](std::string& s) { s.resize(size); });
  }
  absl::Status AppendGarbageForTest(const Digest& digest) override {
    return Rewrite(digest, [&](std::string& s) { s += "garbage"; });
  }
  absl::StatusOr<int> PendingWritesForTest() override {
    ASSIGN_OR_RETURN(std::vector<FileInfo> entries, base_->GetChildren(store_->TempDir()));
    // Owner lock files are not writes.
    return static_cast<int>(std::count_if(entries.begin(), entries.end(),
                                          [](const FileInfo& e) { return !IsOwnerLockName(e.name); }));
  }
  FaultInjectionEnv* faults() override { return faults_.get(); }

 private:
  absl::Status Rewrite(const Digest& digest, const std::function<void(std::string&)>& edit) {
    const std::string path = store_->ObjectPath(digest);
    ASSIGN_OR_RETURN(std::string bytes, base_->ReadFileToString(path));
    edit(bytes);
    return base_->WriteFileAtomic(path, bytes);
  }

  std::unique_ptr<ScopedTempDir> tmp_;
  std::unique_ptr<Env> base_;
  MemEnv* mem_ = nullptr;
  std::string root_;
  std::unique_ptr<FaultInjectionEnv> faults_;
  std::unique_ptr<LocalObjectStore> store_;
};

INSTANTIATE_TEST_SUITE_P(
    Local, ObjectStoreTest,
    ::testing::Values(ObjectStoreTestParam{"Posix", [] { return std::make_unique<LocalHarness>(true); }},
                      ObjectStoreTestParam{"Mem", [] { return std::make_unique<LocalHarness>(false); }}),
    ObjectStoreTestParamName);

class LocalObjectStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  // The temp files in tmp/ (not the owner lock files).
  absl::StatusOr<std::vector<FileInfo>> TempFiles() {
    ASSIGN_OR_RETURN(std::vector<FileInfo> entries, h_.base_env().GetChildren(h_.local().TempDir()));
    std::erase_if(entries, [](const FileInfo& e) { return IsOwnerLockName(e.name); });
    return entries;
  }
  LocalHarness h_{GetParam()};
};

TEST_P(LocalObjectStoreTest, Layout) {
  ASSERT_OK_AND_ASSIGN(Digest d, h_.store().Put("abc"));
  const std::string hex = d.ToHex();  // ba7816bf...
  const std::string path = h_.root() + "/ba/78/" + hex;
  EXPECT_EQ(h_.local().ObjectPath(d), path);
  ASSERT_OK_AND_ASSIGN(std::string bytes, h_.base_env().ReadFileToString(path));
  EXPECT_EQ(bytes, "abc");
  EXPECT_TRUE(h_.base_env().FileExists(h_.root() + "/tmp"));
  ASSERT_OK_AND_ASSIGN(std::vector<FileInfo> top, h_.base_env().GetChildren(h_.root()));
  EXPECT_EQ(top.size(), 2u);  // ba/ and tmp/.
}

TEST_P(LocalObjectStoreTest, CommitSyncsFileAndDirectories) {
  FaultInjectionEnv& f = *h_.faults();
  f.Reset();
  ASSERT_OK(h_.store().Put("first").status());
  EXPECT_EQ(f.CallCount(FaultInjectionEnv::Op::kSync), 1);
  EXPECT_EQ(f.CallCount(FaultInjectionEnv::Op::kRename), 1);
  EXPECT_EQ(f.CallCount(FaultInjectionEnv::Op::kSyncDir), 3);  // New shard: its parent, the root, then the shard.
  f.Reset();
  ASSERT_OK(h_.store().Put("first").status());  // Dedup: no rename.
  EXPECT_EQ(f.CallCount(FaultInjectionEnv::Op::kRename), 0);
}

TEST_P(LocalObjectStoreTest, WritesStreamToDiskWithBoundedBuffering) {
  ASSERT_OK_AND_ASSIGN(auto w, h_.store().NewWriter());
  std::string chunk(1 << 20, 'z');
  for (int i = 0; i < 8; ++i) ASSERT_OK(w->Append(chunk));
  ASSERT_OK_AND_ASSIGN(std::vector<FileInfo> tmp, TempFiles());
  ASSERT_EQ(tmp.size(), 1u);
  EXPECT_GE(tmp[0].size, 7u << 20);  // At most one buffer (1 MiB) held back.
  for (int i = 0; i < 8 * 1024; ++i) ASSERT_OK(w->Append(std::string_view(chunk).substr(0, 100)));
  ASSERT_OK_AND_ASSIGN(tmp, TempFiles());
  EXPECT_GE(tmp[0].size, (8u << 20) + 819200 - (1u << 20));
  ASSERT_OK(w->Commit().status());
}

TEST_P(LocalObjectStoreTest, CreateRemovesLeftoverTempFilesAndKeepsObjects) {
  ASSERT_OK_AND_ASSIGN(Digest d, h_.store().Put("kept"));
  ASSERT_OK(h_.base_env().WriteFileAtomic(h_.local().TempDir() + "/deadbeef.tmp", "partial"));
  ASSERT_OK_AND_ASSIGN(auto reopened, LocalObjectStore::Create(h_.base_env(), h_.root(),
                                                               LocalObjectStore::Options{.remove_temp_files = false}));
  EXPECT_EQ(*h_.PendingWritesForTest(), 1);
  ASSERT_OK_AND_ASSIGN(reopened, LocalObjectStore::Create(h_.base_env(), h_.root() + "/"));
  EXPECT_EQ(*h_.PendingWritesForTest(), 0);
  ASSERT_OK_AND_ASSIGN(std::string got, reopened->Get(d));
  EXPECT_EQ(got, "kept");
  ASSERT_OK_AND_ASSIGN(int removed, reopened->RemoveTempFiles());
  EXPECT_EQ(removed, 0);
}

// Several processes may share a store: a store's cleanup removes only the
// temp files of writers that are gone (their owner lock is free).
TEST_P(LocalObjectStoreTest, CleanupSparesLiveWritersAndRemovesDeadOnes) {
  ASSERT_OK_AND_ASSIGN(auto writer, h_.store().NewWriter());
  ASSERT_OK(writer->Append("in flight"));
  ASSERT_OK_AND_ASSIGN(auto batch, h_.store().NewWriteBatch());
  ASSERT_OK(batch->Put(std::string(300000, 'b')).status());
  // A dead owner: its lock file exists but nobody holds it.
  const std::string dead = "0123456789abcdef";
  ASSERT_OK(h_.base_env().WriteFileAtomic(h_.local().TempDir() + "/" + dead + ".lock", ""));
  ASSERT_OK(h_.base_env().WriteFileAtomic(
      h_.local().TempDir() + "/" + dead + "-" + std::string(32, 'a') + ".tmp", "left by a crash"));
  ASSERT_EQ(*h_.PendingWritesForTest(), 3);

  ASSERT_OK_AND_ASSIGN(auto other, LocalObjectStore::Create(h_.base_env(), h_.root()));  // another process
  EXPECT_EQ(*h_.PendingWritesForTest(), 2);  // only the dead owner's file went
  EXPECT_FALSE(h_.base_env().FileExists(h_.local().TempDir() + "/" + dead + ".lock"));
  ASSERT_OK_AND_ASSIGN(auto report, FsckObjectStore(h_.base_env(), h_.root()));
  EXPECT_TRUE(report.problems.empty()) << "live writes are not problems";

  ASSERT_OK_AND_ASSIGN(ObjectInfo info, writer->Commit());
  ASSERT_OK(batch->Commit());
  EXPECT_EQ(*h_.PendingWritesForTest(), 0);
  ASSERT_OK_AND_ASSIGN(std::string got, other->Get(info.digest));
  EXPECT_EQ(got, "in flight");
}

TEST_P(LocalObjectStoreTest, ListIgnoresStrayFiles) {
  ASSERT_OK_AND_ASSIGN(Digest d, h_.store().Put("real"));
  Env& env = h_.base_env();
  const std::string shard = DirName(h_.local().ObjectPath(d));
  ASSERT_OK(env.WriteFileAtomic(shard + "/not-a-digest", "x"));
  ASSERT_OK(env.WriteFileAtomic(h_.root() + "/README", "x"));
  ASSERT_OK(env.CreateDirs(h_.root() + "/zz/zz"));
  // A valid digest in the wrong shard is not listed either.
  ASSERT_OK(env.CreateDirs(h_.root() + "/00/00"));
  ASSERT_OK(env.WriteFileAtomic(h_.root() + "/00/00/" + d.ToHex(), "real"));
  int n = 0;
  ASSERT_OK(h_.store().List([&](const ObjectInfo& info) {
    ++n;
    EXPECT_EQ(info.digest, d);
    return absl::OkStatus();
  }));
  EXPECT_EQ(n, 1);
}

TEST_P(LocalObjectStoreTest, CreateFailsWhenRootIsAFile) {
  ASSERT_OK(h_.base_env().WriteFileAtomic(h_.root() + "/file", "x"));
  EXPECT_FALSE(LocalObjectStore::Create(h_.base_env(), h_.root() + "/file").ok());
  EXPECT_THAT(LocalObjectStore::Create(h_.base_env(), ""), StatusIs(absl::StatusCode::kInvalidArgument));
}

INSTANTIATE_TEST_SUITE_P(Envs, LocalObjectStoreTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Posix" : "Mem"; });

// Crash simulation (MemEnv): committed objects survive, uncommitted ones vanish.
TEST(LocalObjectStoreCrashTest, CommittedObjectsSurviveACrash) {
  LocalHarness h(/*posix=*/false);
  ASSERT_OK_AND_ASSIGN(Digest d, h.store().Put(std::string(3 << 20, 'q')));
  ASSERT_OK_AND_ASSIGN(auto w, h.store().NewWriter());
  ASSERT_OK(w->Append(std::string(3 << 20, 'u')));
  h.mem()->DropUnsyncedData();
  w.reset();
  ASSERT_OK_AND_ASSIGN(auto reopened, LocalObjectStore::Create(h.base_env(), h.root()));
  EXPECT_OK(reopened->Verify(d));
  EXPECT_EQ(*h.PendingWritesForTest(), 0);
  int n = 0;
  ASSERT_OK(reopened->List([&](const ObjectInfo&) {
    ++n;
    return absl::OkStatus();
  }));
  EXPECT_EQ(n, 1);
}

// A crash before a write batch's Commit leaves none of its objects; after it,
// all of them.
TEST(LocalObjectStoreCrashTest, WriteBatchIsDurableOnlyAfterCommit) {
  LocalHarness h(/*posix=*/false);
  ASSERT_OK_AND_ASSIGN(auto committed, h.store().NewWriteBatch());
  ASSERT_OK_AND_ASSIGN(Digest a, committed->Put(std::string(1 << 20, 'a')));
  ASSERT_OK(committed->Commit());
  ASSERT_OK_AND_ASSIGN(auto open_batch, h.store().NewWriteBatch());
  ASSERT_OK(open_batch->Put(std::string(1 << 20, 'b')).status());
  h.mem()->DropUnsyncedData();
  ASSERT_OK_AND_ASSIGN(auto reopened, LocalObjectStore::Create(h.base_env(), h.root()));
  EXPECT_OK(reopened->Verify(a));
  int n = 0;
  ASSERT_OK(reopened->List([&](const ObjectInfo&) {
    ++n;
    return absl::OkStatus();
  }));
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace cairn::store
