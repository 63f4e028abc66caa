// Content-defined chunking throughput (data/chunker.h) on random data in
// memory, one core. Prints one JSON line.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "data/chunker.h"

int main() {
  constexpr size_t kBytes = size_t{512} << 20;
  std::string data(kBytes, '\0');
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < kBytes; i += 8) {
    uint64_t v = rng();
    for (int j = 0; j < 8; ++j) data[i + j] = static_cast<char>(v >> (8 * j));
  }
  double best = 1e9;
  size_t chunks = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    chunks = cairn::data::ChunkLengths(cairn::data::kDefaultChunking, data).size();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf(
      "{\"bench\":\"cdc_chunking\",\"bytes\":%zu,\"chunks\":%zu,\"mean_chunk_kib\":%.1f,\"mb_per_s_one_core\":%.1f}\n",
      kBytes, chunks, static_cast<double>(kBytes) / static_cast<double>(chunks) / 1024, kBytes / best / 1e6);
  return 0;
}
