#include "data/ingest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <span>
#include <thread>

#include <fmt/format.h>

#include "absl/synchronization/mutex.h"
#include "data/internal/scoped_fd.h"

namespace cairn::data {
namespace {

// Files up to this size are read and hashed whole by the reader itself:
// passing 4 KB through a queue would cost more than hashing it.
constexpr uint64_t kSmallFile = 256 << 10;
constexpr size_t kReadBlock = 8 << 20;

struct ChunkTask {
  uint32_t file;
  uint32_t index;
  std::string data;
};

struct ChunkDone {
  uint32_t file;
  uint32_t index;
  ChunkRef ref;
};

// Chunks waiting for a hasher, bounded by their total size.
class ChunkQueue {
 public:
  explicit ChunkQueue(uint64_t capacity) : capacity_(capacity) {}

  // Blocks while full; false once closed.
  bool Push(ChunkTask task) {
    absl::MutexLock lock(&mu_);
    const uint64_t size = task.data.size();
    auto has_room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || bytes_ == 0 || bytes_ + size <= capacity_;
    };
    mu_.Await(absl::Condition(&has_room));
    if (closed_) return false;
    bytes_ += size;
    tasks_.push_back(std::move(task));
    return true;
  }

  // Blocks while empty and open; false when closed and drained.
  bool Pop(ChunkTask& out) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !tasks_.empty(); };
    mu_.Await(absl::Condition(&ready));
    if (tasks_.empty()) return false;
    out = std::move(tasks_.front());
    tasks_.pop_front();
    bytes_ -= out.data.size();
    return true;
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  // Drops queued work (after an error).
  void Abort() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    tasks_.clear();
    bytes_ = 0;
  }

 private:
  absl::Mutex mu_;
  std::deque<ChunkTask> tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  const uint64_t capacity_;
};

using internal::ScopedFd;

// Reads up to `n` bytes (fewer only at the end of the file).
absl::StatusOr<size_t> ReadFully(int fd, const std::string& path, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(fmt::format("read {}: {}", path, std::strerror(errno)));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

class Ingestion {
 public:
  Ingestion(const std::vector<ScannedFile>& files, ChunkSink& sink, const IngestOptions& options)
      : files_(files), sink_(sink), options_(options), queue_(options.max_in_flight_bytes) {}

  absl::StatusOr<std::vector<ManifestFile>> Run() {
    if (files_.size() > UINT32_MAX) return absl::InvalidArgumentError("too many files in one commit");
    results_.resize(files_.size());
    for (const ScannedFile& f : files_) bytes_total_ += f.size;
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int hashers = options_.threads > 0 ? options_.threads : cores;
    const int readers = std::min(2, hashers);
    std::vector<std::vector<ChunkDone>> done(readers + hashers);

    std::vector<std::thread> reader_threads, hasher_threads;
    std::atomic<int> readers_left{readers};
    for (int i = 0; i < readers; ++i) {
      reader_threads.emplace_back([this, &done, &readers_left, i] {
        ReadLoop(done[i]);
        if (--readers_left == 0) queue_.Close();
      });
    }
    for (int i = 0; i < hashers; ++i) {
      hasher_threads.emplace_back([this, &done, readers, i] { HashLoop(done[readers + i]); });
    }
    // Report progress while the workers run.
    std::thread waiter([&] {
      for (auto& t : reader_threads) t.join();
      for (auto& t : hasher_threads) t.join();
      absl::MutexLock lock(&finish_mu_);
      workers_done_ = true;
    });
    for (;;) {
      bool all_done;
      {
        absl::MutexLock lock(&finish_mu_);
        auto finished = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(finish_mu_) { return workers_done_; };
        all_done = finish_mu_.AwaitWithTimeout(absl::Condition(&finished),
                                               absl::Milliseconds(std::max(10, options_.progress_interval_ms)));
      }
      if (options_.progress) options_.progress(Progress());
      if (all_done) break;
    }
    waiter.join();
    {
      absl::MutexLock lock(&error_mu_);
      if (!error_.ok()) return error_;
    }
    RETURN_IF_ERROR(sink_.Flush());

    // Assemble: every chunk's digest into its file's slot.
    for (auto& list : done) {
      for (ChunkDone& d : list) results_[d.file].chunks[d.index] = d.ref;
    }
    std::vector<ManifestFile> out;
    out.reserve(files_.size());
    for (size_t i = 0; i < files_.size(); ++i) {
      const ScannedFile& f = files_[i];
      ManifestFile m{.path = f.path, .size = f.size, .mode = f.mode & 07777, .chunks = std::move(results_[i].chunks)};
      if (options_.stat_cache != nullptr && !results_[i].from_cache) options_.stat_cache->Insert(f, m.chunks);
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  struct FileResult {
    std::vector<ChunkRef> chunks;  // sizes set by the reader, digests by hashers
    bool from_cache = false;
  };

  IngestProgress Progress() const {
    return IngestProgress{.files_total = files_.size(),
                          .bytes_total = bytes_total_,
                          .files_done = files_done_.load(),
                          .bytes_done = bytes_done_.load(),
                          .files_cached = files_cached_.load()};
  }

  bool Failed() const { return failed_.load(std::memory_order_relaxed); }

  void Fail(absl::Status s) {
    {
      absl::MutexLock lock(&error_mu_);
      if (error_.ok()) error_ = std::move(s);
    }
    failed_ = true;
    queue_.Abort();
  }

  void ReadLoop(std::vector<ChunkDone>& done) {
    std::string buf;
    Sha256 hasher;
    for (;;) {
      const size_t i = next_file_.fetch_add(1);
      if (i >= files_.size() || Failed()) return;
      const ScannedFile& f = files_[i];
      if (options_.stat_cache != nullptr) {
        if (std::optional<std::span<const ChunkRef>> cached = options_.stat_cache->Lookup(f)) {
          results_[i].chunks.assign(cached->begin(), cached->end());
          results_[i].from_cache = true;
          ++files_cached_;
          ++files_done_;
          bytes_done_ += f.size;
          continue;
        }
      }
      absl::Status s = ReadFile(static_cast<uint32_t>(i), f, buf, hasher, done);
      if (!s.ok()) {
        Fail(std::move(s));
        return;
      }
      ++files_done_;
    }
  }

  absl::Status ReadFile(uint32_t index, const ScannedFile& f, std::string& buf, Sha256& hasher,
                        std::vector<ChunkDone>& done) {
    ScopedFd fd(::open(f.disk_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return absl::InternalError(fmt::format("open {}: {}", f.disk_path, std::strerror(errno)));
    std::vector<ChunkRef>& chunks = results_[index].chunks;
    const ChunkerParams& params = *options_.chunking;
    auto changed = [&] {
      return absl::FailedPreconditionError(
          fmt::format("{} changed while being added (it was {} bytes); add it again", f.disk_path, f.size));
    };

    if (f.size <= kSmallFile) {
      // Read whole (one byte more, to notice growth), chunk, hash here.
      buf.resize(f.size + 1);
      ASSIGN_OR_RETURN(size_t n, ReadFully(fd.get(), f.disk_path, buf.data(), buf.size()));
      if (n != f.size) return changed();
      std::string_view data(buf.data(), n);
      size_t off = 0;
      while (off < data.size()) {
        size_t len = FindChunkBoundary(params, data.substr(off));
        std::string_view piece = data.substr(off, len);
        hasher.Update(piece);
        Digest d = hasher.Finish();
        RETURN_IF_ERROR(sink_.Put(d, piece));
        chunks.push_back(ChunkRef{d, len});  // complete: no hasher fills it in later
        off += len;
      }
      bytes_done_ += f.size;
      return absl::OkStatus();
    }

    // Large file: cut chunks as blocks arrive; hashers hash them in parallel.
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    buf.resize(std::max(kReadBlock, params.max_size * 2));
    size_t begin = 0, end = 0;
    uint64_t total = 0;
    bool eof = false;
    while (!eof || begin < end) {
      if (Failed()) return absl::OkStatus();  // the first error is already recorded
      if (!eof && end - begin < params.max_size) {
        // Refill: move the tail to the front, then read behind it.
        std::memmove(buf.data(), buf.data() + begin, end - begin);
        end -= begin;
        begin = 0;
        const size_t want = buf.size() - end;
        ASSIGN_OR_RETURN(size_t n, ReadFully(fd.get(), f.disk_path, buf.data() + end, want));
        end += n;
        total += n;
        if (n < want) eof = true;
        if (total > f.size) return changed();
        continue;
      }
      const size_t len = FindChunkBoundary(params, reinterpret_cast<const uint8_t*>(buf.data()) + begin, end - begin);
      const uint32_t chunk_index = static_cast<uint32_t>(chunks.size());
      chunks.push_back(ChunkRef{Digest{}, len});
      if (!queue_.Push(ChunkTask{index, chunk_index, std::string(buf.data() + begin, len)})) {
        return absl::OkStatus();  // aborted after another error
      }
      begin += len;
    }
    if (total != f.size) return changed();
    return absl::OkStatus();
  }

  void HashLoop(std::vector<ChunkDone>& done) {
    Sha256 hasher;
    ChunkTask task;
    while (queue_.Pop(task)) {
      hasher.Update(task.data);
      Digest d = hasher.Finish();
      absl::Status s = sink_.Put(d, task.data);
      if (!s.ok()) {
        Fail(absl::Status(s.code(), fmt::format("{}: {}", files_[task.file].disk_path, s.message())));
        return;
      }
      done.push_back({task.file, task.index, ChunkRef{d, task.data.size()}});
      bytes_done_ += task.data.size();
    }
  }

  const std::vector<ScannedFile>& files_;
  ChunkSink& sink_;
  const IngestOptions& options_;
  ChunkQueue queue_;
  std::vector<FileResult> results_;
  uint64_t bytes_total_ = 0;
  std::atomic<size_t> next_file_{0};
  std::atomic<uint64_t> files_done_{0}, bytes_done_{0}, files_cached_{0};
  std::atomic<bool> failed_{false};
  absl::Mutex error_mu_;
  absl::Status error_ ABSL_GUARDED_BY(error_mu_);
  absl::Mutex finish_mu_;
  bool workers_done_ ABSL_GUARDED_BY(finish_mu_) = false;
};

}  // namespace

absl::StatusOr<std::vector<ManifestFile>> IngestFiles(const std::vector<ScannedFile>& files, ChunkSink& sink,
                                                      const IngestOptions& options) {
  Ingestion ingestion(files, sink, options);
  return ingestion.Run();
}

}  // namespace cairn::data
