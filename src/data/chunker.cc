#include "data/chunker.h"

#include <array>
#include <bit>
#include <cassert>

namespace cairn::data {
namespace {

// splitmix64: a fixed, well-mixed sequence for the gear table.
constexpr uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr std::array<uint64_t, 256> MakeGear() {
  std::array<uint64_t, 256> gear{};
  uint64_t state = 0x6361697266636463ull;  // "cairfcdc": never change (it would change every chunk)
  for (uint64_t& g : gear) g = SplitMix64(state);
  return gear;
}

constexpr std::array<uint64_t, 256> kGear = MakeGear();

// A mask with `bits` one-bits spread over the high half of the word: the
// gear hash's high bits depend on the most recent ~64 bytes.
constexpr uint64_t SpreadMask(int bits) {
  uint64_t mask = 0;
  int placed = 0;
  for (int pos = 63; pos >= 0 && placed < bits; pos -= 2, ++placed) mask |= uint64_t{1} << pos;
  for (int pos = 62; pos >= 0 && placed < bits; pos -= 2, ++placed) mask |= uint64_t{1} << pos;
  return mask;
}

}  // namespace

size_t FindChunkBoundary(const ChunkerParams& p, const uint8_t* data, size_t n) {
  assert(p.min_size >= 64 && p.min_size <= p.avg_size && p.avg_size <= p.max_size);
  assert(std::has_single_bit(p.avg_size));
  if (n <= p.min_size) return n;
  const size_t end = n < p.max_size ? n : p.max_size;
  const size_t normal = n < p.avg_size ? n : p.avg_size;
  // Normalized chunking, level 2: two more bits before the average, two fewer after.
  const int bits = std::countr_zero(p.avg_size);
  const uint64_t mask_strict = SpreadMask(bits + 2);
  const uint64_t mask_loose = SpreadMask(bits - 2);
  uint64_t h = 0;
  size_t i = p.min_size;
  for (; i < normal; ++i) {
    h = (h << 1) + kGear[data[i]];
    if ((h & mask_strict) == 0) return i + 1;
  }
  for (; i < end; ++i) {
    h = (h << 1) + kGear[data[i]];
    if ((h & mask_loose) == 0) return i + 1;
  }
  return end;
}

std::vector<size_t> ChunkLengths(const ChunkerParams& p, std::string_view data) {
  std::vector<size_t> lengths;
  size_t off = 0;
  while (off < data.size()) {
    size_t len = FindChunkBoundary(p, data.substr(off));
    lengths.push_back(len);
    off += len;
  }
  return lengths;
}

}  // namespace cairn::data
