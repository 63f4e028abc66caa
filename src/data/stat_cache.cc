#include "data/stat_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include <spdlog/spdlog.h>

#include "absl/hash/hash.h"
#include "base/sha256.h"

namespace cairn::data {
namespace {

constexpr std::string_view kMagic = "CAIRNSTC";
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 32;
// The smallest possible entry: shared, suffix_len, one suffix byte, size,
// mtime, ctime, inode, device, chunk_count. Bounds the entry count a file
// of a given size can claim, so a bad count cannot size an allocation.
constexpr size_t kMinEntryBytes = 1 + 1 + 1 + 1 + 8 + 8 + 1 + 1 + 1;
constexpr size_t kMinChunkBytes = 32 + 1;
constexpr size_t kMaxPathBytes = 1 << 16;

absl::Status ErrnoStatus(int err, std::string message) {
  return absl::Status(absl::ErrnoToStatusCode(err),
                      fmt::format("{}: {}", message, std::generic_category().message(err)));
}

int64_t ToNanos(const struct timespec& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec; }

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void PutFixed64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 8);
}

void PutFixed32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out.append(b, 4);
}

uint64_t DecodeFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

uint32_t DecodeFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// A bounds-checked reader over the body; every getter returns false once
// the input is exhausted or malformed.
class Reader {
 public:
  explicit Reader(std::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}

  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && p_ < end_; shift += 7) {
      uint64_t byte = static_cast<unsigned char>(*p_++);
      result |= (byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool Fixed64(uint64_t* v) {
    if (remaining() < 8) return false;
    *v = DecodeFixed64(p_);
    p_ += 8;
    return true;
  }
  bool Bytes(size_t n, const char** out) {
    if (remaining() < n) return false;
    *out = p_;
    p_ += n;
    return true;
  }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }

 private:
  const char* p_;
  const char* end_;
};

}  // namespace

size_t StatCache::PathHash::operator()(std::string_view s) const {
  return absl::Hash<absl::string_view>{}(absl::string_view(s.data(), s.size()));
}

StatCache::StatCache(std::string file) : file_(std::move(file)) {}

StatCache::~StatCache() = default;

absl::StatusOr<std::unique_ptr<StatCache>> StatCache::Open(std::string file) {
  std::unique_ptr<StatCache> cache(new StatCache(std::move(file)));
  const std::string& path = cache->file_;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return cache;
    return ErrnoStatus(err, fmt::format("cannot open stat cache '{}'", path));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, fmt::format("cannot stat stat cache '{}'", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(fmt::format("stat cache '{}' is not a regular file", path));
  }
  // The file is mapped (pre-faulted in one call) rather than read into a
  // fresh buffer: for 200k entries that saves a 13 MB copy and thousands of
  // page faults. The mapping lives only while Load copies what it keeps.
  // Save replaces the file by rename, so it never changes under the map.
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = nullptr;
  if (size > 0) {
    map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, fmt::format("cannot read stat cache '{}'", path));
    }
  }
  ::close(fd);
  cache->written_ns_ = ToNanos(st.st_mtim);
  std::string_view data(static_cast<const char*>(map), map == nullptr ? 0 : size);
  std::string why;
  bool loaded = cache->Load(data, &why);
  if (map != nullptr) ::munmap(map, size);
  if (loaded) {
    cache->on_disk_ = true;
  } else {
    spdlog::warn("ignoring stat cache '{}' ({}); unchanged files will be read again", path, why);
  }
  return cache;
}

bool StatCache::Load(std::string_view data, std::string* why) {
  auto fail = [&](std::string reason) {
    *why = std::move(reason);
    paths_ = std::string();
    entries_ = std::vector<Entry>();
    chunks_ = std::vector<ChunkRef>();
    return false;
  };
  if (data.size() < kHeaderSize) return fail("shorter than its header");
  if (data.substr(0, kMagic.size()) != kMagic) return fail("not a stat cache file");
  uint32_t version = DecodeFixed32(data.data() + 8);
  if (version != kVersion) return fail(fmt::format("format version {}, this build reads version {}", version, kVersion));
  uint64_t count = DecodeFixed64(data.data() + 16);
  Digest expected;
  std::memcpy(expected.bytes.data(), data.data() + 24, 32);
  std::string_view body = data.substr(kHeaderSize);
  if (Sha256::Of(body) != expected) return fail("checksum mismatch");
  if (count > body.size() / kMinEntryBytes) return fail("entry count larger than the file can hold");

  entries_.reserve(count);
  chunks_.reserve(count);  // typically one chunk per file; grows if not
  paths_.reserve(body.size());
  Reader in(body);
  size_t prev_offset = 0;
  size_t prev_size = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t shared = 0;
    uint64_t suffix_size = 0;
    const char* suffix = nullptr;
    if (!in.Varint(&shared) || !in.Varint(&suffix_size) || !in.Bytes(suffix_size, &suffix)) {
      return fail("truncated entry");
    }
    if (shared > prev_size || shared + suffix_size == 0 || shared + suffix_size > kMaxPathBytes) {
      return fail(fmt::format("entry {}: bad path length", i));
    }
    Entry e;
    e.path_offset = paths_.size();
    e.path_size = static_cast<uint32_t>(shared + suffix_size);
    // Reserve first so that the shared part is copied from a buffer that
    // does not move under the copy.
    if (paths_.capacity() < paths_.size() + e.path_size) paths_.reserve(2 * (paths_.size() + e.path_size));
    paths_.append(paths_.data() + prev_offset, shared);
    paths_.append(suffix, suffix_size);
    if (i > 0 && !(std::string_view(paths_).substr(prev_offset, prev_size) < PathOf(e))) {
      return fail(fmt::format("entry {}: paths not in strictly increasing order", i));
    }
    uint64_t mtime = 0;
    uint64_t ctime = 0;
    uint64_t chunk_count = 0;
    if (!in.Varint(&e.stat.size) || !in.Fixed64(&mtime) || !in.Fixed64(&ctime) || !in.Varint(&e.stat.inode) ||
        !in.Varint(&e.stat.device) || !in.Varint(&chunk_count)) {
      return fail("truncated entry");
    }
    e.stat.mtime_ns = static_cast<int64_t>(mtime);
    e.stat.ctime_ns = static_cast<int64_t>(ctime);
    if (chunk_count > in.remaining() / kMinChunkBytes) return fail(fmt::format("entry {}: bad chunk count", i));
    e.chunk_begin = chunks_.size();
    e.chunk_count = static_cast<uint32_t>(chunk_count);
    uint64_t total = 0;
    for (uint64_t c = 0; c < chunk_count; ++c) {
      ChunkRef ref;
      const char* digest = nullptr;
      if (!in.Bytes(32, &digest) || !in.Varint(&ref.size)) return fail("truncated entry");
      std::memcpy(ref.digest.bytes.data(), digest, 32);
      if (ref.size == 0 || total + ref.size < total) return fail(fmt::format("entry {}: bad chunk size", i));
      total += ref.size;
      chunks_.push_back(ref);
    }
    if (total != e.stat.size) return fail(fmt::format("entry {}: chunk sizes do not add up to the file size", i));
    prev_offset = e.path_offset;
    prev_size = e.path_size;
    entries_.push_back(e);
  }
  if (in.remaining() != 0) return fail("bytes after the last entry");
  used_ = std::make_unique<std::atomic<bool>[]>(entries_.size());
  return true;
}

size_t StatCache::Find(std::string_view disk_path) const {
  const size_t n = entries_.size();
  size_t hint = next_hint_.load(std::memory_order_relaxed);
  if (hint < n && PathOf(entries_[hint]) == disk_path) return hint;
  if (n == 0) return n;
  absl::call_once(index_once_, [this] {
    // paths_ no longer grows after Load, so views into it are stable.
    index_.reserve(entries_.size());
    for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(PathOf(entries_[i]), static_cast<uint32_t>(i));
  });
  auto it = index_.find(disk_path);
  return it == index_.end() ? n : it->second;
}

std::optional<std::span<const ChunkRef>> StatCache::Lookup(const ScannedFile& f) const {
  const size_t i = Find(f.disk_path);
  if (i == entries_.size()) return std::nullopt;
  next_hint_.store(i + 1, std::memory_order_relaxed);
  const Entry& e = entries_[i];
  if (e.stat != StatKey{f.size, f.mtime_ns, f.ctime_ns, f.inode, f.device}) return std::nullopt;
  // Racily clean: the file may have changed after it was hashed within the
  // same timestamp tick as the cache was written, leaving stat unchanged.
  if (e.stat.mtime_ns >= written_ns_ || e.stat.ctime_ns >= written_ns_) return std::nullopt;
  std::atomic<bool>& used = used_[i];
  if (!used.load(std::memory_order_relaxed)) used.store(true, std::memory_order_relaxed);
  return std::span<const ChunkRef>(chunks_.data() + e.chunk_begin, e.chunk_count);
}

void StatCache::Insert(const ScannedFile& f, std::vector<ChunkRef> chunks) {
  absl::MutexLock lock(&mu_);
  inserted_.insert_or_assign(f.disk_path,
                             InsertedEntry{StatKey{f.size, f.mtime_ns, f.ctime_ns, f.inode, f.device}, std::move(chunks)});
}

absl::Status StatCache::Save() {
  absl::MutexLock lock(&mu_);
  struct Kept {
    std::string_view path;
    const StatKey* stat;
    std::span<const ChunkRef> chunks;
  };
  if (on_disk_ && inserted_.empty()) {
    size_t used = 0;
    for (size_t i = 0; i < entries_.size(); ++i) used += used_[i].load(std::memory_order_relaxed) ? 1 : 0;
    if (used == entries_.size()) return absl::OkStatus();  // the file already holds exactly this
  }
  std::vector<Kept> loaded;
  loaded.reserve(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (!used_[i].load(std::memory_order_relaxed)) continue;
    std::string_view path = PathOf(entries_[i]);
    if (!inserted_.empty() && inserted_.contains(absl::string_view(path.data(), path.size()))) continue;
    loaded.push_back(Kept{path, &entries_[i].stat,
                          std::span<const ChunkRef>(chunks_.data() + entries_[i].chunk_begin, entries_[i].chunk_count)});
  }
  std::vector<Kept> added;
  added.reserve(inserted_.size());
  for (const auto& [path, entry] : inserted_) added.push_back(Kept{path, &entry.stat, entry.chunks});
  const auto by_path = [](const Kept& a, const Kept& b) { return a.path < b.path; };
  std::sort(added.begin(), added.end(), by_path);
  std::vector<Kept> all;
  all.reserve(loaded.size() + added.size());
  std::merge(loaded.begin(), loaded.end(), added.begin(), added.end(), std::back_inserter(all), by_path);

  std::string out;
  out.reserve(kHeaderSize + all.size() * 96);
  out.append(kHeaderSize, '\0');
  std::string_view prev;
  for (const Kept& k : all) {
    size_t shared = 0;
    while (shared < prev.size() && shared < k.path.size() && prev[shared] == k.path[shared]) ++shared;
    PutVarint(out, shared);
    PutVarint(out, k.path.size() - shared);
    out.append(k.path.data() + shared, k.path.size() - shared);
    PutVarint(out, k.stat->size);
    PutFixed64(out, static_cast<uint64_t>(k.stat->mtime_ns));
    PutFixed64(out, static_cast<uint64_t>(k.stat->ctime_ns));
    PutVarint(out, k.stat->inode);
    PutVarint(out, k.stat->device);
    PutVarint(out, k.chunks.size());
    for (const ChunkRef& c : k.chunks) {
      out.append(reinterpret_cast<const char*>(c.digest.bytes.data()), c.digest.bytes.size());
      PutVarint(out, c.size);
    }
    prev = k.path;
  }
  std::string header;
  header.reserve(kHeaderSize);
  header.append(kMagic);
  PutFixed32(header, kVersion);
  PutFixed32(header, 0);
  PutFixed64(header, all.size());
  Digest sum = Sha256::Of(std::string_view(out).substr(kHeaderSize));
  header.append(reinterpret_cast<const char*>(sum.bytes.data()), sum.bytes.size());
  out.replace(0, kHeaderSize, header);

  std::string tmp = file_ + ".tmp-XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    int err = errno;
    return ErrnoStatus(err, fmt::format("cannot create a temporary file next to stat cache '{}'", file_));
  }
  auto fail = [&](int err, std::string_view what) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, fmt::format("cannot {} stat cache '{}'", what, file_));
  };
  for (size_t done = 0; done < out.size();) {
    ssize_t n = ::write(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, "write");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail(errno, "sync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, fmt::format("cannot close stat cache '{}'", file_));
  }
  if (::rename(tmp.c_str(), file_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, fmt::format("cannot replace stat cache '{}'", file_));
  }
  size_t slash = file_.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : file_.substr(0, slash);
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    int err = errno;
    return ErrnoStatus(err, fmt::format("cannot open directory '{}' to sync it", dir));
  }
  int rc = ::fsync(dir_fd);
  int err = errno;
  ::close(dir_fd);
  if (rc != 0) return ErrnoStatus(err, fmt::format("cannot sync directory '{}'", dir));
  // The file now holds what was just written, not what Open loaded.
  on_disk_ = false;
  return absl::OkStatus();
}

}  // namespace cairn::data
