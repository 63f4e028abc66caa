// Re-adding an unchanged tree, client side (data/tree_scanner.h,
// data/stat_cache.h): creates N files of 4 KiB (default 200,000, in 200
// directories) in a temporary directory, scans them, fills and saves a stat
// cache, then times what a re-add does before hashing: open the cache,
// scan, look every file up, save. Page cache warm. Prints JSON lines.
//
// Usage: scan_bench [FILES] [DIR]   (DIR: where to create the tree; default $TMPDIR or /tmp)
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "data/stat_cache.h"
#include "data/tree_scanner.h"

namespace {

using cairn::data::ChunkRef;
using cairn::data::ScannedFile;
using cairn::data::StatCache;

// CPU seconds used by the whole process (all threads) so far: on a busy
// machine wall times swing, CPU time much less.
double CpuSeconds() {
  rusage r;
  ::getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

void Die(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const long files = argc > 1 ? std::atol(argv[1]) : 200000;
  const char* tmp_env = std::getenv("TMPDIR");
  std::string base = argc > 2 ? argv[2] : (tmp_env != nullptr && *tmp_env != '\0' ? tmp_env : "/tmp");
  std::string tmpl = base + "/cairn-scan-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string root = tmpl + "/tree";
  const std::string cache_file = tmpl + "/stat-cache";
  constexpr long kPerDir = 1000;

  auto t0 = std::chrono::steady_clock::now();
  std::string block(4096, 'x');
  std::filesystem::create_directory(root);
  for (long i = 0; i < files; ++i) {
    std::string dir = root + "/shard-" + std::to_string(i / kPerDir);
    if (i % kPerDir == 0) std::filesystem::create_directory(dir);
    std::string path = dir + "/sample-" + std::to_string(i) + ".bin";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    std::snprintf(block.data(), 32, "%ld", i);  // distinct contents
    if (fd < 0 || ::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
      std::perror(path.c_str());
      return 1;
    }
    ::close(fd);
  }
  const double create_s = Seconds(t0);

  // First add: scan, "hash" (fake digests: hashing is not measured here), save.
  t0 = std::chrono::steady_clock::now();
  auto scanned = cairn::data::ScanTree({root}, {});
  if (!scanned.ok()) Die("scan", scanned.status());
  const double first_scan_s = Seconds(t0);
  {
    auto cache = StatCache::Open(cache_file);
    if (!cache.ok()) Die("open", cache.status());
    for (size_t i = 0; i < scanned->size(); ++i) {
      ChunkRef c;
      for (size_t b = 0; b < 8; ++b) c.digest.bytes[b] = static_cast<uint8_t>(i >> (8 * b));
      c.size = (*scanned)[i].size;
      (*cache)->Insert((*scanned)[i], {c});
    }
    t0 = std::chrono::steady_clock::now();
    if (absl::Status s = (*cache)->Save(); !s.ok()) Die("save", s);
  }
  const double first_save_s = Seconds(t0);
  const auto cache_bytes = std::filesystem::file_size(cache_file);

  // Re-adds of the unchanged tree; best of a few runs.
  double best_total = 1e9, best_open = 0, best_scan = 0, best_lookup = 0, best_save = 0, best_scan_cpu = 1e9,
         best_total_cpu = 1e9;
  size_t hits = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto start = std::chrono::steady_clock::now();
    const double start_cpu = CpuSeconds();
    auto cache = StatCache::Open(cache_file);
    if (!cache.ok()) Die("open", cache.status());
    const double open_s = Seconds(start);
    t0 = std::chrono::steady_clock::now();
    const double scan_cpu0 = CpuSeconds();
    auto rescanned = cairn::data::ScanTree({root}, {});
    if (!rescanned.ok()) Die("scan", rescanned.status());
    const double scan_s = Seconds(t0);
    best_scan_cpu = std::min(best_scan_cpu, CpuSeconds() - scan_cpu0);
    t0 = std::chrono::steady_clock::now();
    hits = 0;
    for (const ScannedFile& f : *rescanned) {
      if ((*cache)->Lookup(f).has_value()) ++hits;
    }
    const double lookup_s = Seconds(t0);
    t0 = std::chrono::steady_clock::now();
    if (absl::Status s = (*cache)->Save(); !s.ok()) Die("save", s);
    const double save_s = Seconds(t0);
    const double total = Seconds(start);
    best_total_cpu = std::min(best_total_cpu, CpuSeconds() - start_cpu);
    if (total < best_total) {
      best_total = total;
      best_open = open_s;
      best_scan = scan_s;
      best_lookup = lookup_s;
      best_save = save_s;
    }
  }
  std::printf(
      "{\"bench\":\"scan_first_add\",\"files\":%ld,\"create_s\":%.2f,\"scan_ms\":%.1f,\"cache_save_ms\":%.1f,"
      "\"cache_bytes\":%ju}\n",
      files, create_s, first_scan_s * 1e3, first_save_s * 1e3, static_cast<uintmax_t>(cache_bytes));
  std::printf(
      "{\"bench\":\"scan_readd_unchanged\",\"files\":%ld,\"hits\":%zu,\"cache_open_ms\":%.1f,\"scan_ms\":%.1f,"
      "\"lookup_ms\":%.1f,\"cache_save_ms\":%.1f,\"total_ms\":%.1f,\"scan_cpu_ms\":%.1f,\"total_cpu_ms\":%.1f,"
      "\"threads_available\":%u}\n",
      files, hits, best_open * 1e3, best_scan * 1e3, best_lookup * 1e3, best_save * 1e3, best_total * 1e3,
      best_scan_cpu * 1e3, best_total_cpu * 1e3, std::thread::hardware_concurrency());
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  return hits == static_cast<size_t>(files) ? 0 : 1;
}
