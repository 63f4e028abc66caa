// StatCache: remembers the chunks of files already hashed, keyed by what
// stat(2) says about them, so that re-adding an unchanged tree reads no file
// content (like git's index). One cache file per client workspace; the
// caller picks its location.
//
// A lookup hits only if disk path, size, mtime, ctime, inode and device all
// equal the cached entry's, and the entry is not "racily clean": if the
// file's mtime or ctime is not older than the time the cache was written
// (the cache file's own mtime, read from the same kind of clock and with
// the same granularity as file timestamps), the file may have changed
// within the same timestamp tick after it was hashed, so it is treated as a
// miss and hashed again (git's racy-git rule; ctime is included because
// tools that restore an old mtime after writing still move ctime).
//
// The cache is only an accelerator: a missing file is an empty cache, and
// a corrupt, truncated or foreign-version file is an empty cache plus a
// warning, never an error.
//
// File format (integers little-endian; varints are unsigned LEB128):
//   header, 56 bytes:
//     magic "CAIRNSTC" (8) | version u32 = 1 | reserved u32 = 0 |
//     entry count u64 | SHA-256 of the body (32)
//   body: the entries, sorted bytewise by disk path, each path once:
//     varint shared        bytes of the path shared with the previous
//                          entry's path (0 for the first entry)
//     varint suffix_len, suffix bytes   the rest of the path
//     varint size | mtime_ns i64 | ctime_ns i64 | varint inode |
//     varint device | varint chunk_count |
//     chunk_count x (digest 32 bytes | varint chunk size)
// The chunk sizes of an entry add up to its size. Prefix sharing keeps a
// cache of 200k absolute paths small, which matters because the whole body
// is hashed on every Open. Spec: docs/data-stat-cache.md.
//
// Thread-safety: Lookup and Insert may be called concurrently from any
// threads; Save may run concurrently with them too.
//
// Ownership: Open returns a cache owned by the caller. The span returned by
// Lookup points into the cache and stays valid for the cache's lifetime.
//
// Usage:
//   ASSIGN_OR_RETURN(std::unique_ptr<StatCache> cache, StatCache::Open(home + "/stat-cache"));
//   for (const ScannedFile& f : files) {
//     if (std::optional<std::span<const ChunkRef>> chunks = cache->Lookup(f)) {
//       Use(*chunks);                        // not read again
//     } else {
//       std::vector<ChunkRef> c = HashAndStore(f.disk_path);
//       cache->Insert(f, c);
//     }
//   }
//   RETURN_IF_ERROR(cache->Save());          // keeps only the entries used above
#ifndef CAIRN_DATA_STAT_CACHE_H_
#define CAIRN_DATA_STAT_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/status.h"
#include "data/manifest.h"
#include "data/tree_scanner.h"

namespace cairn::data {

class StatCache {
 public:
  // Loads the cache stored in `file` (read in one go, checksum verified).
  // A missing file gives an empty cache; a corrupt or foreign-version one
  // an empty cache and a logged warning. Errors only when the file exists
  // but cannot be read (e.g. kPermissionDenied), since Save would then
  // fail too, after all the hashing work.
  static absl::StatusOr<std::unique_ptr<StatCache>> Open(std::string file);

  StatCache(const StatCache&) = delete;
  StatCache& operator=(const StatCache&) = delete;
  ~StatCache();

  // The chunks of `f` if an entry loaded by Open matches it exactly and is
  // not racily clean (see above), else nullopt. A hit marks the entry as
  // used, so Save keeps it. Entries Inserted since Open are not visible
  // here: a lookup never has to take a lock.
  std::optional<std::span<const ChunkRef>> Lookup(const ScannedFile& f) const;

  // Records that `f` (as stat'ed when scanned, before its content was
  // read) has `chunks`. Replaces any entry for the same disk path.
  // REQUIRES: f.disk_path is absolute; the chunk sizes add up to f.size.
  void Insert(const ScannedFile& f, std::vector<ChunkRef> chunks);

  // Writes the entries hit by Lookup or Inserted since Open (and no
  // others, so the cache does not grow without bound) to the file given
  // to Open: temp file, fsync, rename, fsync of the directory. When that
  // set is exactly what Open loaded, the file is already right and is not
  // rewritten. May be called more than once.
  absl::Status Save();

  // Number of entries loaded by Open.
  size_t loaded_entries() const { return entries_.size(); }

 private:
  // What must match for a hit, besides the path.
  struct StatKey {
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    uint64_t inode = 0;
    uint64_t device = 0;
    bool operator==(const StatKey&) const = default;
  };
  // One loaded entry; its path lives in `paths_`, its chunks in `chunks_`.
  struct Entry {
    StatKey stat;
    size_t path_offset = 0;
    size_t chunk_begin = 0;
    uint32_t path_size = 0;
    uint32_t chunk_count = 0;
  };
  struct InsertedEntry {
    StatKey stat;
    std::vector<ChunkRef> chunks;
  };
  struct PathHash {
    size_t operator()(std::string_view s) const;
  };

  explicit StatCache(std::string file);
  // Parses a whole cache file; false (with *why set) if it is not a valid
  // version-1 cache, leaving the cache empty.
  bool Load(std::string_view data, std::string* why);
  // The index of the loaded entry for `disk_path`, or entries_.size().
  size_t Find(std::string_view disk_path) const;
  std::string_view PathOf(const Entry& e) const { return std::string_view(paths_).substr(e.path_offset, e.path_size); }

  const std::string file_;
  // The file holds exactly what Open loaded (set by Open before the cache is
  // shared, then only touched by Save under mu_).
  bool on_disk_ = false;
  int64_t written_ns_ = 0;   // the cache file's mtime: the racy-git reference time
  std::string paths_;        // every loaded path, back to back
  std::vector<Entry> entries_;       // in file order (sorted by path)
  std::vector<ChunkRef> chunks_;     // every loaded entry's chunks, back to back
  std::unique_ptr<std::atomic<bool>[]> used_;  // per entry: hit since Open
  // Files are usually looked up in the order a scan returns them, which
  // is the cache's own order, so Lookup first tries the entry after the
  // previous hit (a hint: any value is safe). The hash index is built on
  // the first lookup the hint does not answer: re-adding an unchanged tree
  // never needs it.
  mutable std::atomic<size_t> next_hint_{0};
  mutable absl::once_flag index_once_;
  mutable absl::flat_hash_map<std::string_view, uint32_t, PathHash> index_;  // path -> entries_ index

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, InsertedEntry> inserted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::data

#endif  // CAIRN_DATA_STAT_CACHE_H_
