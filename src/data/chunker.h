// Content-defined chunking (FastCDC with normalized chunking) for dataset
// files: boundaries depend on the bytes around them, not on offsets, so
// inserting or deleting bytes in the middle of a large file changes only the
// chunk(s) around the edit and every other chunk keeps its digest (and is
// stored once).
//
// Algorithm (Xia et al., "FastCDC", USENIX ATC 2016): a 64-bit "gear" rolling
// hash, h = (h << 1) + GEAR[byte], is tested against a mask at each byte
// after the minimum size. Normalized chunking uses a stricter mask (more
// bits) before the average size and a looser one after it, which narrows the
// spread of chunk sizes around the average. A chunk never exceeds the
// maximum size. The gear table is fixed (derived from a constant seed), so
// boundaries are stable across versions and machines: changing it would
// change every chunk digest. Sizes: docs/data-chunking.md.
//
// Thread-safety: stateless; FindChunkBoundary may be called from any thread.
//
// Usage:
//   const ChunkerParams& p = kDefaultChunking;
//   size_t off = 0;
//   while (off < data.size()) {
//     size_t len = FindChunkBoundary(p, data.data() + off, data.size() - off);
//     Store(data.substr(off, len));
//     off += len;
//   }
// For streams, keep at least `max_size` bytes buffered (or everything up to
// the end of the file) before calling FindChunkBoundary.
#ifndef CAIRN_DATA_CHUNKER_H_
#define CAIRN_DATA_CHUNKER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace cairn::data {

struct ChunkerParams {
  size_t min_size;  // no boundary before this many bytes
  size_t avg_size;  // a power of two: the target mean chunk size
  size_t max_size;  // a boundary at the latest here
};

// 256 KiB / 1 MiB / 4 MiB: large enough that per-chunk overhead (one object,
// one manifest entry) stays small, small enough that an edit costs ~1 MiB.
inline constexpr ChunkerParams kDefaultChunking = {256 << 10, 1 << 20, 4 << 20};

// The length of the first chunk of `data[0, n)`, assuming `data` starts at a
// chunk boundary. If n <= min_size, or no boundary is found before the end
// and n < max_size, returns n: the caller must then either have reached the
// end of the input or provide more bytes. REQUIRES: p is valid (min <= avg <=
// max, avg a power of two, min >= 64).
size_t FindChunkBoundary(const ChunkerParams& p, const uint8_t* data, size_t n);
inline size_t FindChunkBoundary(const ChunkerParams& p, std::string_view data) {
  return FindChunkBoundary(p, reinterpret_cast<const uint8_t*>(data.data()), data.size());
}

// Every chunk length of a whole in-memory input, in order.
std::vector<size_t> ChunkLengths(const ChunkerParams& p, std::string_view data);

}  // namespace cairn::data

#endif  // CAIRN_DATA_CHUNKER_H_
