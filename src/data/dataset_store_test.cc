// Chunk store, dataset store, ingest and garbage collection, on a real
// SQLite database and a real local object store.
#include "data/dataset_store.h"

#include <sys/stat.h>

#include <fstream>
#include <random>
#include <thread>

#include "base/testing.h"
#include "data/chunk_store.h"
#include "data/gc.h"
#include "data/ingest.h"
#include "data/tree_scanner.h"
#include "db/sqlite_database.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/local_object_store.h"

namespace cairn::data {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

class DatasetStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = NewPosixEnv();
    ASSERT_OK_AND_ASSIGN(db_, db::OpenSqliteDatabase({.path = tmp_.path() + "/cairn.db"}));
    ASSERT_OK_AND_ASSIGN(objects_, store::LocalObjectStore::Create(*env_, tmp_.path() + "/objects"));
    ASSERT_OK_AND_ASSIGN(keys_, store::KeyRing::OpenOrCreate(*env_, tmp_.path() + "/keys"));
    ASSERT_OK_AND_ASSIGN(chunks_, ChunkStore::Create(*db_, *objects_, *env_));
    ASSERT_OK_AND_ASSIGN(datasets_, DatasetStore::Create(*db_, *chunks_, keys_.get(), *env_));
  }

  // Stores `files` (path -> bytes) through the ingest path and commits them.
  absl::StatusOr<CommitResult> CommitFiles(const Dataset& ds, const std::map<std::string, std::string>& files,
                                           const std::string& branch = "main",
                                           std::optional<std::vector<Split>> splits = std::nullopt,
                                           std::vector<std::string> seal = {}) {
    const std::string dir = tmp_.path() + "/work-" + std::to_string(counter_++);
    RETURN_IF_ERROR(env_->CreateDirs(dir));
    for (const auto& [path, bytes] : files) {
      const std::string p = dir + "/" + path;
      RETURN_IF_ERROR(env_->CreateDirs(DirName(p)));
      std::ofstream(p, std::ios::binary) << bytes;
    }
    ASSIGN_OR_RETURN(std::vector<ScannedFile> scanned, ScanTree({dir}, {}));
    ASSIGN_OR_RETURN(ChunkScope scope, datasets_->ScopeOf(ds));
    ASSIGN_OR_RETURN(auto batch, chunks_->NewBatch(scope, false));
    ChunkStoreSink sink(*batch);
    ASSIGN_OR_RETURN(std::vector<ManifestFile> entries, IngestFiles(scanned, sink, {}));
    last_stored_bytes_ = batch->stored_bytes();
    DatasetManifest m;
    m.files = std::move(entries);
    RETURN_IF_ERROR(m.Normalize());
    ASSIGN_OR_RETURN(Digest md, datasets_->PutManifest(ds, m));
    ASSIGN_OR_RETURN(std::optional<DatasetCommit> head, datasets_->Head(ds, branch));
    return datasets_->Commit(ds, NewCommit{.branch = branch,
                                           .expected_head = head ? head->id : "",
                                           .manifest = md,
                                           .message = "test",
                                           .author = "ana",
                                           .splits = std::move(splits),
                                           .seal = std::move(seal)});
  }

  absl::StatusOr<std::string> ReadWhole(const Dataset& ds, const DatasetCommit& c, const std::string& path,
                                        uint64_t offset = 0, uint64_t length = UINT64_MAX) {
    ASSIGN_OR_RETURN(DatasetManifest m, datasets_->GetManifest(ds, c.manifest));
    for (const ManifestFile& f : m.files) {
      if (f.path != path) continue;
      std::string out;
      RETURN_IF_ERROR(datasets_->ReadFile(ds, f, offset, length, [&](std::string_view b) {
        out.append(b);
        return absl::OkStatus();
      }));
      return out;
    }
    return absl::NotFoundError(path);
  }

  cairn::testing::ScopedTempDir tmp_;
  std::unique_ptr<Env> env_;
  std::unique_ptr<db::Database> db_;
  std::unique_ptr<store::LocalObjectStore> objects_;
  std::unique_ptr<store::KeyRing> keys_;
  std::unique_ptr<ChunkStore> chunks_;
  std::unique_ptr<DatasetStore> datasets_;
  int counter_ = 0;
  uint64_t last_stored_bytes_ = 0;
};

TEST_F(DatasetStoreTest, CommitLogShowAndRead) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "iris", "flowers", false));
  const std::string big = RandomBytes(5 << 20, 1);
  ASSERT_OK_AND_ASSIGN(CommitResult c1, CommitFiles(ds, {{"a.txt", "hello"}, {"sub/big.bin", big}}));
  EXPECT_TRUE(c1.created);
  EXPECT_EQ(c1.commit.file_count, 2u);
  EXPECT_EQ(c1.commit.total_bytes, big.size() + 5);
  EXPECT_EQ(c1.commit.id.size(), 64u);
  ASSERT_OK_AND_ASSIGN(std::string got, ReadWhole(ds, c1.commit, "sub/big.bin"));
  EXPECT_TRUE(got == big);
  ASSERT_OK_AND_ASSIGN(std::string range, ReadWhole(ds, c1.commit, "sub/big.bin", (1 << 20) - 3, 2 << 20));
  EXPECT_TRUE(range == big.substr((1 << 20) - 3, 2 << 20));
  EXPECT_THAT(ReadWhole(ds, c1.commit, "a.txt", 6, 1), StatusIs(absl::StatusCode::kOutOfRange));

  ASSERT_OK_AND_ASSIGN(CommitResult same, CommitFiles(ds, {{"a.txt", "hello"}, {"sub/big.bin", big}}));
  EXPECT_FALSE(same.created);
  EXPECT_EQ(same.commit.id, c1.commit.id);
  EXPECT_EQ(last_stored_bytes_, 0u);  // everything deduplicated

  ASSERT_OK_AND_ASSIGN(CommitResult c2, CommitFiles(ds, {{"a.txt", "hello, world"}, {"new.csv", "x,y\n1,2\n"}}));
  ASSERT_OK_AND_ASSIGN(auto log, datasets_->Log(ds, "main", 10));
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].id, c2.commit.id);
  EXPECT_EQ(log[1].id, c1.commit.id);
  ASSERT_OK_AND_ASSIGN(DatasetCommit by_prefix, datasets_->Resolve(ds, c1.commit.id.substr(0, 10)));
  EXPECT_EQ(by_prefix.id, c1.commit.id);

  ASSERT_OK_AND_ASSIGN(DatasetManifest m1, datasets_->GetManifest(ds, c1.commit.manifest));
  ASSERT_OK_AND_ASSIGN(DatasetManifest m2, datasets_->GetManifest(ds, c2.commit.manifest));
  std::vector<FileChange> diff = DiffManifests(m1, m2);
  ASSERT_EQ(diff.size(), 3u);
  EXPECT_EQ(diff[0].path, "a.txt");
  EXPECT_EQ(diff[0].kind, FileChange::Kind::kModified);
  EXPECT_EQ(diff[0].new_size, 12u);
  EXPECT_EQ(diff[1].path, "new.csv");
  EXPECT_EQ(diff[1].kind, FileChange::Kind::kAdded);
  EXPECT_EQ(diff[2].path, "sub/big.bin");
  EXPECT_EQ(diff[2].kind, FileChange::Kind::kRemoved);
}

TEST_F(DatasetStoreTest, InsertingInTheMiddleOfALargeFileStoresFewNewBytes) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "big", "", false));
  std::string data = RandomBytes(48 << 20, 2);
  ASSERT_OK(CommitFiles(ds, {{"data.bin", data}}).status());
  data.insert(24 << 20, RandomBytes(100000, 3));
  ASSERT_OK_AND_ASSIGN(CommitResult c, CommitFiles(ds, {{"data.bin", data}}));
  EXPECT_TRUE(c.created);
  EXPECT_LT(last_stored_bytes_, 10u << 20) << "only the chunks around the edit are new";
  ASSERT_OK_AND_ASSIGN(std::string got, ReadWhole(ds, c.commit, "data.bin"));
  EXPECT_TRUE(got == data);
}

TEST_F(DatasetStoreTest, CompressibleChunksAreStoredCompressed) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "text", "", false));
  std::string csv = "a,b,c\n";
  while (csv.size() < (3 << 20)) csv += "1,2,3\n";
  ASSERT_OK_AND_ASSIGN(CommitResult c, CommitFiles(ds, {{"t.csv", csv}}));
  EXPECT_LT(last_stored_bytes_, csv.size() / 10);
  ASSERT_OK_AND_ASSIGN(std::string got, ReadWhole(ds, c.commit, "t.csv"));
  EXPECT_TRUE(got == csv);
}

TEST_F(DatasetStoreTest, BranchCompareAndSwap) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "cas", "", false));
  ASSERT_OK_AND_ASSIGN(CommitResult c1, CommitFiles(ds, {{"a", "1"}}));
  DatasetManifest m;
  m.files.push_back({.path = "b", .size = 0, .mode = 0644});
  ASSERT_OK(m.Normalize());
  ASSERT_OK_AND_ASSIGN(Digest md, datasets_->PutManifest(ds, m));
  // Built on "no commit" although main has one: refused.
  EXPECT_THAT(datasets_->Commit(ds, {.branch = "main", .expected_head = "", .manifest = md}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("moved")));
  ASSERT_OK_AND_ASSIGN(CommitResult c2,
                       datasets_->Commit(ds, {.branch = "main", .expected_head = c1.commit.id, .manifest = md}));
  EXPECT_EQ(c2.commit.parents, std::vector<std::string>{c1.commit.id});
}

TEST_F(DatasetStoreTest, ConcurrentCommitsToOneBranchNeverLoseOne) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "race", "", false));
  ASSERT_OK(CommitFiles(ds, {{"seed", "0"}}).status());
  constexpr int kThreads = 4, kEach = 5;
  std::atomic<int> landed{0}, aborted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        DatasetManifest m;
        m.files.push_back({.path = fmt::format("f{}-{}", t, i), .size = 0, .mode = 0644});
        ASSERT_OK(m.Normalize());
        auto md = datasets_->PutManifest(ds, m);
        ASSERT_OK(md.status());
        auto head = datasets_->Head(ds, "main");
        ASSERT_OK(head.status());
        auto r = datasets_->Commit(ds, {.branch = "main", .expected_head = (*head)->id, .manifest = *md});
        if (r.ok()) {
          ++landed;
        } else {
          EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kAborted));
          ++aborted;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(landed + aborted, kThreads * kEach);
  EXPECT_GE(landed.load(), 1);
  // Every landed commit is in the history: none was overwritten.
  ASSERT_OK_AND_ASSIGN(auto log, datasets_->Log(ds, "main", 1000));
  EXPECT_EQ(static_cast<int>(log.size()), landed.load() + 1);
}

TEST_F(DatasetStoreTest, RefsAndNames) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "refs", "", false));
  EXPECT_THAT(datasets_->CreateDataset("default", "refs", "", false), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(datasets_->CreateDataset("default", "../x", "", false), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(CommitResult c1, CommitFiles(ds, {{"a", "1"}}));
  ASSERT_OK(datasets_->CreateRef(ds, "tag", "v1", "main"));
  EXPECT_THAT(datasets_->CreateRef(ds, "tag", "v1", "main"), StatusIs(absl::StatusCode::kAlreadyExists));
  ASSERT_OK(datasets_->CreateRef(ds, "branch", "dev", "v1"));
  ASSERT_OK(CommitFiles(ds, {{"a", "2"}}, "dev").status());
  ASSERT_OK_AND_ASSIGN(DatasetCommit tag, datasets_->Resolve(ds, "v1"));
  EXPECT_EQ(tag.id, c1.commit.id);  // tags do not move
  ASSERT_OK_AND_ASSIGN(DatasetCommit main, datasets_->Resolve(ds, "main"));
  EXPECT_EQ(main.id, c1.commit.id);  // another branch's commit leaves main alone
  EXPECT_THAT(datasets_->Resolve(ds, "nope"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(datasets_->DeleteRef(ds, "branch", "dev"));
  EXPECT_THAT(datasets_->DeleteRef(ds, "branch", "dev"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DatasetStoreTest, SplitsAreDisjointAndSealingSticks) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "splits", "", false));
  std::map<std::string, std::string> files = {{"train/a.csv", "x\n1\n"}, {"train/b.csv", "x\n2\n"}, {"test/c.csv", "x\n3\n"}};
  std::vector<Split> splits = {{.name = "train", .globs = {"train/**"}}, {.name = "test", .globs = {"test/**"}}};
  EXPECT_THAT(CommitFiles(ds, files, "main", std::vector<Split>{{.name = "all", .globs = {"**"}}, splits[1]}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both split")));
  EXPECT_THAT(CommitFiles(ds, files, "main", std::vector<Split>{{.name = "none", .globs = {"nothing/**"}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("matches no file")));
  EXPECT_THAT(CommitFiles(ds, files, "main", splits, {"validation"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no such split")));
  ASSERT_OK_AND_ASSIGN(CommitResult c, CommitFiles(ds, files, "main", splits, {"test"}));
  const Split* test = c.commit.FindSplit("test");
  ASSERT_NE(test, nullptr);
  EXPECT_TRUE(test->sealed);
  EXPECT_EQ(test->files, 1u);
  EXPECT_EQ(c.commit.FindSplit("train")->files, 2u);
  // A child inherits the splits, still sealed; redeclaring does not unseal.
  files["test/d.csv"] = "x\n4\n";
  ASSERT_OK_AND_ASSIGN(CommitResult child, CommitFiles(ds, files, "main", splits));
  EXPECT_TRUE(child.commit.FindSplit("test")->sealed);
  EXPECT_EQ(child.commit.FindSplit("test")->files, 2u);
  // Dropping a sealed split is refused.
  EXPECT_THAT(CommitFiles(ds, files, "main", std::vector<Split>{splits[0]}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sealed")));
}

TEST_F(DatasetStoreTest, EncryptedDatasetRoundTripAndObjectsRevealNothing) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "secret", "", true));
  const std::string secret = "patient-id,diagnosis\n12345,very secret words\n";
  std::string big = RandomBytes(300000, 9);
  ASSERT_OK_AND_ASSIGN(CommitResult c, CommitFiles(ds, {{"records.csv", secret}, {"big.bin", big}}));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadWhole(ds, c.commit, "records.csv"));
  EXPECT_EQ(got, secret);
  // No object holds the plaintext, the file name, or a plaintext digest.
  ASSERT_OK(objects_->List([&](const store::ObjectInfo& info) {
    EXPECT_NE(info.digest, Sha256::Of(secret));
    EXPECT_NE(info.digest, Sha256::Of(big));
    absl::StatusOr<std::string> bytes = objects_->Get(info.digest);
    EXPECT_OK(bytes.status());
    EXPECT_EQ(bytes->find("very secret"), std::string::npos);
    EXPECT_EQ(bytes->find("records.csv"), std::string::npos);
    return absl::OkStatus();
  }));
  // The same content in a plaintext dataset is stored separately (no
  // cross-scope dedup leaks presence).
  ASSERT_OK_AND_ASSIGN(Dataset plain, datasets_->CreateDataset("default", "plain", "", false));
  ASSERT_OK(CommitFiles(plain, {{"records.csv", secret}}).status());
  EXPECT_GT(last_stored_bytes_, 0u);
  // Dedup inside the encrypted dataset still works.
  ASSERT_OK(CommitFiles(ds, {{"records.csv", secret}, {"big.bin", big}, {"copy.bin", big}}).status());
  EXPECT_EQ(last_stored_bytes_, 0u);
}

TEST_F(DatasetStoreTest, TamperedEncryptedChunkIsDetectedNeverReturned) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "tamper", "", true));
  const std::string big = RandomBytes(200000, 4);
  ASSERT_OK_AND_ASSIGN(CommitResult c, CommitFiles(ds, {{"big.bin", big}}));
  ASSERT_OK_AND_ASSIGN(ChunkScope scope, datasets_->ScopeOf(ds));
  ASSERT_OK_AND_ASSIGN(ChunkLocation loc, chunks_->Locate(scope, Sha256::Of(big)));
  // Flip one byte of the sealed chunk on disk.
  const std::string path = objects_->ObjectPath(loc.object);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(loc.offset + 100));
  char b;
  f.seekg(static_cast<std::streamoff>(loc.offset + 100));
  f.read(&b, 1);
  b ^= 0x20;
  f.seekp(static_cast<std::streamoff>(loc.offset + 100));
  f.write(&b, 1);
  f.close();
  EXPECT_THAT(ReadWhole(ds, c.commit, "big.bin"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(DatasetStoreTest, CommitRefusesAManifestWithMissingChunks) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "missing", "", false));
  DatasetManifest m;
  m.files.push_back({.path = "ghost", .size = 5, .mode = 0644, .chunks = {{Sha256::Of("never"), 5}}});
  ASSERT_OK(m.Normalize());
  ASSERT_OK_AND_ASSIGN(Digest md, datasets_->PutManifest(ds, m));
  EXPECT_THAT(datasets_->Commit(ds, {.manifest = md}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not stored")));
  ASSERT_OK_AND_ASSIGN(auto head, datasets_->Head(ds, "main"));
  EXPECT_FALSE(head.has_value());
}

TEST_F(DatasetStoreTest, VerifyingBatchRejectsAWrongDigest) {
  ASSERT_OK_AND_ASSIGN(auto batch, chunks_->NewBatch(ChunkScope{}, /*verify=*/true));
  EXPECT_THAT(batch->Add(Sha256::Of("a"), "b"), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(batch->Add(Sha256::Of("a"), "a"));
  ASSERT_OK(batch->Commit());
  EXPECT_EQ(batch->stored_chunks(), 1u);
  ASSERT_OK_AND_ASSIGN(std::string got, chunks_->Read(ChunkScope{}, Sha256::Of("a")));
  EXPECT_EQ(got, "a");
}

GcOptions TestGc(int64_t grace_ms = 0) {
  return GcOptions{.grace_ms = grace_ms, .allow_short_grace_for_test = true};
}

TEST_F(DatasetStoreTest, GcFreesUnreachableAndKeepsEveryReachableObject) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "gc", "", false));
  const std::string keep = RandomBytes(1 << 20, 5);
  ASSERT_OK_AND_ASSIGN(CommitResult c1, CommitFiles(ds, {{"keep.bin", keep}, {"small.txt", "s"}}));
  // Orphans: chunks stored but never committed, and a stray object.
  {
    ASSERT_OK_AND_ASSIGN(auto batch, chunks_->NewBatch(ChunkScope{}, false));
    const std::string orphan = RandomBytes(2 << 20, 6);
    ASSERT_OK(batch->Add(Sha256::Of(orphan), orphan));
    ASSERT_OK(batch->Add(Sha256::Of("tiny orphan"), "tiny orphan"));
    ASSERT_OK(batch->Commit());
  }
  ASSERT_OK_AND_ASSIGN(Digest stray, objects_->Put("stray artifact"));
  ASSERT_OK_AND_ASSIGN(Digest artifact, objects_->Put("a run artifact"));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));

  // Within the grace period nothing goes.
  ASSERT_OK_AND_ASSIGN(GcReport young, CollectGarbage(*datasets_, *objects_, *env_, TestGc(3600'000)));
  EXPECT_EQ(young.freed_objects, 0u);
  EXPECT_EQ(young.freed_chunks, 0u);

  GcOptions opts = TestGc();
  opts.extra_roots = [&](const std::function<void(const Digest&)>& add) {
    add(artifact);
    return absl::OkStatus();
  };
  opts.dry_run = true;
  ASSERT_OK_AND_ASSIGN(GcReport dry, CollectGarbage(*datasets_, *objects_, *env_, opts));
  EXPECT_EQ(dry.freed_chunks, 2u);
  EXPECT_GE(dry.freed_objects, 2u);
  opts.dry_run = false;
  ASSERT_OK_AND_ASSIGN(GcReport r, CollectGarbage(*datasets_, *objects_, *env_, opts));
  EXPECT_EQ(r.freed_chunks, 2u);
  EXPECT_EQ(r.freed_objects, dry.freed_objects);
  EXPECT_GT(r.freed_bytes, 2u << 20);
  EXPECT_FALSE(*objects_->Has(stray));
  EXPECT_TRUE(*objects_->Has(artifact));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadWhole(ds, c1.commit, "keep.bin"));
  EXPECT_TRUE(got == keep);
  ASSERT_OK_AND_ASSIGN(std::string small, ReadWhole(ds, c1.commit, "small.txt"));
  EXPECT_EQ(small, "s");
  // A branch deleted: its commits stay reachable (commits are never deleted).
  ASSERT_OK(datasets_->DeleteRef(ds, "branch", "main"));
  ASSERT_OK_AND_ASSIGN(GcReport again, CollectGarbage(*datasets_, *objects_, *env_, opts));
  EXPECT_EQ(again.freed_chunks, 0u);
}

TEST_F(DatasetStoreTest, GcDuringConcurrentCommitsNeverDeletesAReachableChunk) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "busy", "", false));
  std::atomic<bool> stop{false};
  std::vector<DatasetCommit> landed;
  absl::Mutex mu;
  std::thread writer([&] {
    for (int i = 0; i < 12 && !stop; ++i) {
      auto r = CommitFiles(ds, {{"f.bin", RandomBytes(300000 + i, 100 + i)}, {fmt::format("s{}", i), "x"}});
      if (r.ok()) {
        absl::MutexLock lock(&mu);
        landed.push_back(r->commit);
      } else {
        // The only acceptable failures are clean retries.
        EXPECT_THAT(r.status().code(), ::testing::AnyOf(absl::StatusCode::kAborted,
                                                        absl::StatusCode::kFailedPrecondition))
            << r.status();
      }
    }
  });
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK(CollectGarbage(*datasets_, *objects_, *env_, TestGc()).status());
  }
  writer.join();
  ASSERT_OK(CollectGarbage(*datasets_, *objects_, *env_, TestGc()).status());
  ASSERT_FALSE(landed.empty());
  for (const DatasetCommit& c : landed) {
    ASSERT_OK_AND_ASSIGN(DatasetManifest m, datasets_->GetManifest(ds, c.manifest));
    for (const ManifestFile& f : m.files) {
      EXPECT_OK(ReadWhole(ds, c, f.path).status()) << f.path << " of " << c.id;
    }
  }
}

TEST_F(DatasetStoreTest, KeyRotationRewrapsAndOldKeysCanBeRetired) {
  ASSERT_OK_AND_ASSIGN(Dataset ds, datasets_->CreateDataset("default", "rot", "", true));
  ASSERT_OK_AND_ASSIGN(CommitResult c, CommitFiles(ds, {{"a.txt", "secret"}}));
  const int old_key = keys_->current();
  ASSERT_OK(keys_->Rotate().status());
  ASSERT_OK_AND_ASSIGN(int n, datasets_->RewrapKeys(*keys_));
  EXPECT_EQ(n, 1);
  ASSERT_OK(keys_->Retire(old_key));
  // A fresh store (no cached data keys) still reads the data.
  ASSERT_OK_AND_ASSIGN(auto reopened, DatasetStore::Create(*db_, *chunks_, keys_.get(), *env_));
  datasets_ = std::move(reopened);
  ASSERT_OK_AND_ASSIGN(std::string got, ReadWhole(ds, c.commit, "a.txt"));
  EXPECT_EQ(got, "secret");
}

}  // namespace
}  // namespace cairn::data
