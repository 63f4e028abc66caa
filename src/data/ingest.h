// Ingest: turns scanned files into manifest entries — reading, chunking
// (data/chunker.h) and hashing them on every core — and hands each chunk to a
// ChunkSink (the embedded chunk store, or a server over HTTP).
//
// Pipeline: reader threads read files and cut them into content-defined
// chunks; hasher threads hash each chunk and offer it to the sink. Chunks in
// flight are bounded in bytes (IngestOptions::max_in_flight_bytes), so memory
// stays bounded whatever the file sizes, and one large file is hashed on all
// cores at once. A StatCache (data/stat_cache.h) hit skips the file
// entirely: an unchanged tree is not read again.
//
// Thread-safety: IngestFiles is reentrant; the sink must be thread-safe.
//
// Usage:
//   ChunkStoreSink sink(*batch);
//   ASSIGN_OR_RETURN(std::vector<ManifestFile> files,
//                    IngestFiles(scanned, sink, {.stat_cache = cache.get()}));
#ifndef CAIRN_DATA_INGEST_H_
#define CAIRN_DATA_INGEST_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "base/sha256.h"
#include "base/status.h"
#include "data/chunk_store.h"
#include "data/chunker.h"
#include "data/manifest.h"
#include "data/stat_cache.h"
#include "data/tree_scanner.h"

namespace cairn::data {

// Receives every chunk read (it may already have it). Thread-safe.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  virtual absl::Status Put(const Digest& digest, std::string_view data) = 0;
  // Everything Put so far is durable.
  virtual absl::Status Flush() = 0;
};

// The embedded sink: a batch of the local chunk store (not owned).
class ChunkStoreSink final : public ChunkSink {
 public:
  explicit ChunkStoreSink(ChunkStore::Batch& batch) : batch_(batch) {}
  absl::Status Put(const Digest& digest, std::string_view data) override { return batch_.Add(digest, data); }
  absl::Status Flush() override { return batch_.Commit(); }

 private:
  ChunkStore::Batch& batch_;
};

struct IngestProgress {
  uint64_t files_total = 0;
  uint64_t bytes_total = 0;
  uint64_t files_done = 0;
  uint64_t bytes_done = 0;    // read and hashed, or skipped thanks to the stat cache
  uint64_t files_cached = 0;  // stat cache hits
};

struct IngestOptions {
  StatCache* stat_cache = nullptr;  // optional, not owned
  int threads = 0;                  // hashers; 0: one per core
  uint64_t max_in_flight_bytes = 64ull << 20;
  const ChunkerParams* chunking = &kDefaultChunking;
  // Called from the calling thread about every `progress_interval_ms`, and
  // once at the end.
  std::function<void(const IngestProgress&)> progress;
  int progress_interval_ms = 200;
};

// One ManifestFile per scanned file, in the same order. Fails with the first
// error (a read error, a file that changed size while being read, a sink
// error), naming the file.
absl::StatusOr<std::vector<ManifestFile>> IngestFiles(const std::vector<ScannedFile>& files, ChunkSink& sink,
                                                      const IngestOptions& options);

}  // namespace cairn::data

#endif  // CAIRN_DATA_INGEST_H_
