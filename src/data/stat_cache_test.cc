#include "data/stat_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "base/sha256.h"
#include "base/testing.h"

namespace cairn::data {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Timestamps far in the past, so entries are never racy against a cache
// written now.
constexpr int64_t kOld = int64_t{1'600'000'000} * 1'000'000'000;

ScannedFile File(std::string disk_path, uint64_t size, int64_t mtime_ns = kOld, uint64_t inode = 42) {
  ScannedFile f;
  f.path = "p";
  f.disk_path = std::move(disk_path);
  f.size = size;
  f.mode = 0644;
  f.mtime_ns = mtime_ns;
  f.ctime_ns = mtime_ns + 5;
  f.inode = inode;
  f.device = 7;
  return f;
}

// Chunks of `size` bytes split into `n` parts with distinct digests.
std::vector<ChunkRef> Chunks(std::string_view seed, uint64_t size, int n = 1) {
  std::vector<ChunkRef> out;
  if (size == 0) return out;
  for (int i = 0; i < n; ++i) {
    uint64_t part = i + 1 < n ? size / n : size - (size / n) * (n - 1);
    out.push_back(ChunkRef{Sha256::Of(std::string(seed) + std::to_string(i)), part});
  }
  return out;
}

MATCHER_P(ChunksAre, expected, "") {
  if (!arg.has_value()) {
    *result_listener << "is a miss";
    return false;
  }
  if (arg->size() != expected.size()) return false;
  for (size_t i = 0; i < expected.size(); ++i) {
    if ((*arg)[i].digest != expected[i].digest || (*arg)[i].size != expected[i].size) return false;
  }
  return true;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  ASSERT_TRUE(out.good());
}

class StatCacheTest : public ::testing::Test {
 protected:
  std::unique_ptr<StatCache> OpenCache() {
    auto cache = StatCache::Open(file_);
    EXPECT_OK(cache);
    return cache.ok() ? std::move(cache).value() : nullptr;
  }

  // Saves one entry per file in `files` and reopens the cache.
  std::unique_ptr<StatCache> SaveAndReopen(const std::vector<ScannedFile>& files) {
    auto cache = OpenCache();
    for (const ScannedFile& f : files) cache->Insert(f, Chunks(f.disk_path, f.size));
    EXPECT_OK(cache->Save());
    return OpenCache();
  }

  ScopedTempDir tmp_;
  std::string file_ = tmp_.path() + "/stat-cache";
};

TEST_F(StatCacheTest, MissingFileIsAnEmptyCache) {
  auto cache = OpenCache();
  EXPECT_EQ(cache->loaded_entries(), 0u);
  EXPECT_FALSE(cache->Lookup(File("/d/a", 1)).has_value());
}

TEST_F(StatCacheTest, SaveOpenRoundTrip) {
  ScannedFile empty = File("/data/set/empty", 0);
  ScannedFile one = File("/data/set/one.bin", 100);
  ScannedFile two = File("/data/set/two.bin", 1000, kOld, 43);
  // Paths sharing long and short prefixes exercise the prefix compression.
  ScannedFile shared = File("/data/set/one.bin.bak", 10);
  ScannedFile other = File("/other", 5);
  {
    auto cache = OpenCache();
    cache->Insert(empty, {});
    cache->Insert(one, Chunks("one", 100));
    cache->Insert(two, Chunks("two", 1000, 3));
    cache->Insert(shared, Chunks("shared", 10));
    cache->Insert(other, Chunks("other", 5));
    ASSERT_OK(cache->Save());
  }
  auto cache = OpenCache();
  EXPECT_EQ(cache->loaded_entries(), 5u);
  auto e = cache->Lookup(empty);
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->empty());
  EXPECT_THAT(cache->Lookup(one), ChunksAre(Chunks("one", 100)));
  EXPECT_THAT(cache->Lookup(two), ChunksAre(Chunks("two", 1000, 3)));
  EXPECT_THAT(cache->Lookup(shared), ChunksAre(Chunks("shared", 10)));
  EXPECT_THAT(cache->Lookup(other), ChunksAre(Chunks("other", 5)));
}

TEST_F(StatCacheTest, AnyChangedFieldIsAMiss) {
  const ScannedFile base = File("/d/file", 100);
  auto cache = SaveAndReopen({base});
  ASSERT_TRUE(cache->Lookup(base).has_value());
  std::vector<std::pair<const char*, std::function<void(ScannedFile&)>>> changes = {
      {"disk_path", [](ScannedFile& f) { f.disk_path += "x"; }},
      {"size", [](ScannedFile& f) { f.size += 1; }},
      {"mtime", [](ScannedFile& f) { f.mtime_ns += 1; }},
      {"ctime", [](ScannedFile& f) { f.ctime_ns += 1; }},
      {"inode", [](ScannedFile& f) { f.inode += 1; }},
      {"device", [](ScannedFile& f) { f.device += 1; }},
  };
  for (const auto& [field, change] : changes) {
    ScannedFile f = base;
    change(f);
    EXPECT_FALSE(cache->Lookup(f).has_value()) << field;
  }
  // Neither the dataset path nor the mode is part of the key (a chmod moves ctime).
  ScannedFile renamed = base;
  renamed.path = "elsewhere";
  renamed.mode = 0600;
  EXPECT_TRUE(cache->Lookup(renamed).has_value());
}

TEST_F(StatCacheTest, RacilyCleanEntryIsAMiss) {
  {
    auto cache = OpenCache();
    // Timestamps in the future relative to the cache write stand in for a
    // file touched in the same tick as the write.
    cache->Insert(File("/d/racy-mtime", 1, int64_t{4'000'000'000} * 1'000'000'000), Chunks("a", 1));
    ScannedFile ctime_only = File("/d/racy-ctime", 1);
    ctime_only.ctime_ns = int64_t{4'000'000'000} * 1'000'000'000;
    cache->Insert(ctime_only, Chunks("b", 1));
    cache->Insert(File("/d/clean", 1), Chunks("c", 1));
    ASSERT_OK(cache->Save());
  }
  auto cache = OpenCache();
  EXPECT_EQ(cache->loaded_entries(), 3u);
  EXPECT_FALSE(cache->Lookup(File("/d/racy-mtime", 1, int64_t{4'000'000'000} * 1'000'000'000)).has_value());
  ScannedFile ctime_only = File("/d/racy-ctime", 1);
  ctime_only.ctime_ns = int64_t{4'000'000'000} * 1'000'000'000;
  EXPECT_FALSE(cache->Lookup(ctime_only).has_value());
  EXPECT_TRUE(cache->Lookup(File("/d/clean", 1)).has_value());
}

TEST_F(StatCacheTest, EntryAsNewAsTheCacheFileIsRacy) {
  // The boundary: a timestamp equal to the cache file's own mtime is racy,
  // one nanosecond older is not. The cache file's mtime is pinned so the
  // test does not depend on when Save ran.
  const int64_t written = kOld + 1'000'000;
  ScannedFile same_mtime = File("/d/same-mtime", 1);
  same_mtime.mtime_ns = written;
  same_mtime.ctime_ns = written - 10;
  ScannedFile same_ctime = File("/d/same-ctime", 1);
  same_ctime.mtime_ns = written - 10;
  same_ctime.ctime_ns = written;
  ScannedFile older = File("/d/older", 1);
  older.mtime_ns = written - 1;
  older.ctime_ns = written - 1;
  {
    auto cache = OpenCache();
    for (const ScannedFile& f : {same_mtime, same_ctime, older}) cache->Insert(f, Chunks(f.disk_path, 1));
    ASSERT_OK(cache->Save());
  }
  struct timespec times[2] = {{0, UTIME_OMIT}, {written / 1000000000, written % 1000000000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, file_.c_str(), times, 0), 0);
  auto cache = OpenCache();
  EXPECT_EQ(cache->loaded_entries(), 3u);
  EXPECT_FALSE(cache->Lookup(same_mtime).has_value());
  EXPECT_FALSE(cache->Lookup(same_ctime).has_value());
  EXPECT_THAT(cache->Lookup(older), ChunksAre(Chunks(older.disk_path, 1)));
}

TEST_F(StatCacheTest, CorruptOrForeignFilesAreAnEmptyCache) {
  auto good = SaveAndReopen({File("/d/a", 10), File("/d/b", 20)});
  ASSERT_EQ(good->loaded_entries(), 2u);
  const std::string bytes = ReadAll(file_);
  std::vector<std::pair<const char*, std::string>> bad = {
      {"empty", ""},
      {"truncated header", bytes.substr(0, 20)},
      {"truncated body", bytes.substr(0, bytes.size() - 3)},
      {"flipped body byte", [&] {
         std::string b = bytes;
         b[b.size() - 10] ^= 0x20;
         return b;
       }()},
      {"flipped checksum byte", [&] {
         std::string b = bytes;
         b[30] ^= 1;
         return b;
       }()},
      {"other magic", "NOTCACHE" + bytes.substr(8)},
      {"future version", [&] {
         std::string b = bytes;
         b[8] = 2;
         return b;
       }()},
      {"entry count too large", [&] {
         std::string b = bytes;
         b[16] = 3;
         return b;
       }()},
      {"garbage", std::string(4096, '\x7f')},
  };
  for (const auto& [what, content] : bad) {
    WriteAll(file_, content);
    auto cache = StatCache::Open(file_);
    ASSERT_OK(cache) << what;
    EXPECT_EQ((*cache)->loaded_entries(), 0u) << what;
    EXPECT_FALSE((*cache)->Lookup(File("/d/a", 10)).has_value()) << what;
    // A broken cache is replaced by the next Save.
    (*cache)->Insert(File("/d/c", 1), Chunks("c", 1));
    ASSERT_OK((*cache)->Save()) << what;
    EXPECT_EQ(OpenCache()->loaded_entries(), 1u) << what;
  }
}

TEST_F(StatCacheTest, ValidChecksumButInconsistentBodyIsRejected) {
  // A well-formed header and checksum around a body whose chunk sizes do
  // not add up: written by a buggy writer, never trusted.
  std::string body;
  body += '\0';                   // shared
  body += '\x02';                 // suffix length
  body += "/a";                   // path
  body += '\x0a';                 // size 10
  body += std::string(16, '\0');  // mtime, ctime
  body += '\x01';                 // inode
  body += '\x01';                 // device
  body += '\x01';                 // one chunk
  body += std::string(32, 'd');   // digest
  body += '\x09';                 // chunk size 9 != 10
  std::string file = "CAIRNSTC";
  file += std::string("\x01\0\0\0", 4) + std::string(4, '\0');
  file += std::string("\x01\0\0\0\0\0\0\0", 8);
  Digest d = Sha256::Of(body);
  file.append(reinterpret_cast<const char*>(d.bytes.data()), 32);
  file += body;
  WriteAll(file_, file);
  EXPECT_EQ(OpenCache()->loaded_entries(), 0u);
  // The same body with a consistent size loads.
  file[file.size() - 1] = '\x0a';
  body.back() = '\x0a';
  d = Sha256::Of(body);
  std::copy(d.bytes.begin(), d.bytes.end(), file.begin() + 24);
  WriteAll(file_, file);
  EXPECT_EQ(OpenCache()->loaded_entries(), 1u);
}

TEST_F(StatCacheTest, SaveKeepsOnlyEntriesUsedSinceOpen) {
  ScannedFile a = File("/d/a", 1);
  ScannedFile b = File("/d/b", 2);
  ScannedFile c = File("/d/c", 3);
  auto cache = SaveAndReopen({a, b});
  ASSERT_EQ(cache->loaded_entries(), 2u);
  ASSERT_TRUE(cache->Lookup(a).has_value());
  ScannedFile b_changed = b;
  b_changed.size = 4;
  EXPECT_FALSE(cache->Lookup(b_changed).has_value());  // a miss does not keep b
  cache->Insert(c, Chunks("c", 3));
  ASSERT_OK(cache->Save());
  cache = OpenCache();
  EXPECT_EQ(cache->loaded_entries(), 2u);
  EXPECT_TRUE(cache->Lookup(a).has_value());
  EXPECT_FALSE(cache->Lookup(b).has_value());
  EXPECT_THAT(cache->Lookup(c), ChunksAre(Chunks("c", 3)));
}

TEST_F(StatCacheTest, InsertReplacesALoadedEntry) {
  ScannedFile a = File("/d/a", 10);
  auto cache = SaveAndReopen({a});
  ASSERT_TRUE(cache->Lookup(a).has_value());
  ScannedFile a2 = a;
  a2.size = 20;
  a2.mtime_ns += 1000;
  cache->Insert(a2, Chunks("new", 20, 2));
  // Inserts are not visible to Lookup until the next Open.
  EXPECT_FALSE(cache->Lookup(a2).has_value());
  ASSERT_OK(cache->Save());
  cache = OpenCache();
  EXPECT_EQ(cache->loaded_entries(), 1u);
  EXPECT_FALSE(cache->Lookup(a).has_value());
  EXPECT_THAT(cache->Lookup(a2), ChunksAre(Chunks("new", 20, 2)));
}

TEST_F(StatCacheTest, UnchangedCacheIsNotRewritten) {
  ScannedFile a = File("/d/a", 1);
  auto cache = SaveAndReopen({a});
  struct stat before;
  ASSERT_EQ(::stat(file_.c_str(), &before), 0);
  ASSERT_TRUE(cache->Lookup(a).has_value());
  ASSERT_OK(cache->Save());
  struct stat after;
  ASSERT_EQ(::stat(file_.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);  // a rewrite renames a new file into place
  // With one more entry it is rewritten.
  cache->Insert(File("/d/b", 1), Chunks("b", 1));
  ASSERT_OK(cache->Save());
  ASSERT_EQ(::stat(file_.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
}

TEST_F(StatCacheTest, SaveLeavesNoTemporaryFiles) {
  SaveAndReopen({File("/d/a", 1)});
  std::vector<std::string> names;
  DIR* d = ::opendir(tmp_.path().c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  EXPECT_THAT(names, ElementsAreArray({"stat-cache"}));
}

TEST_F(StatCacheTest, SaveIntoMissingDirectoryFails) {
  auto cache = StatCache::Open(tmp_.path() + "/no/such/dir/cache");
  ASSERT_OK(cache);
  (*cache)->Insert(File("/d/a", 1), Chunks("a", 1));
  EXPECT_THAT((*cache)->Save(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no/such/dir/cache")));
}

TEST_F(StatCacheTest, UnreadableCacheFileIsAnError) {
  EXPECT_THAT(StatCache::Open(tmp_.path()), StatusIs(absl::StatusCode::kFailedPrecondition));
  if (::geteuid() == 0) GTEST_SKIP() << "root reads unreadable files";
  SaveAndReopen({File("/d/a", 1)});
  ASSERT_EQ(::chmod(file_.c_str(), 0), 0);
  EXPECT_THAT(StatCache::Open(file_), StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("stat-cache")));
}

TEST_F(StatCacheTest, ConcurrentInsertsAndLookups) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<ScannedFile> old_files;
  for (int i = 0; i < kPerThread; ++i) old_files.push_back(File("/old/" + std::to_string(i), 1));
  auto cache = SaveAndReopen(old_files);
  std::vector<std::thread> threads;
  std::atomic<int> hits{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (cache->Lookup(old_files[i]).has_value()) ++hits;
        ScannedFile f = File("/new/" + std::to_string(t) + "/" + std::to_string(i), 2);
        cache->Insert(f, Chunks(f.disk_path, 2));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(hits.load(), kThreads * kPerThread);
  ASSERT_OK(cache->Save());
  EXPECT_EQ(OpenCache()->loaded_entries(), size_t{kPerThread + kThreads * kPerThread});
}

}  // namespace
}  // namespace cairn::data
