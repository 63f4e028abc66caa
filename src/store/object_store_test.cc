// The shared ObjectStore suite; see object_store_test.h.
#include "store/object_store_test.h"

#include <chrono>
#include <set>
#include <thread>

namespace cairn::store {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;
using Op = FaultInjectionEnv::Op;

// Deterministic, non-repeating-looking bytes.
std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x);
  }
  return s;
}

Digest Missing() { return Sha256::Of("never stored"); }

// Reads `reader` to the end with `chunk`-sized reads.
absl::StatusOr<std::string> ReadAll(ObjectReader& reader, size_t chunk, std::string* partial = nullptr) {
  std::string out, buf(chunk, '\0');
  for (;;) {
    absl::StatusOr<size_t> n = reader.Read(buf.data(), chunk);
    if (!n.ok()) {
      if (partial != nullptr) *partial = out;
      return n.status();
    }
    if (*n == 0) return out;
    out.append(buf.data(), *n);
  }
}

std::vector<ObjectInfo> ListAll(ObjectStore& store) {
  std::vector<ObjectInfo> out;
  EXPECT_OK(store.List([&](const ObjectInfo& info) {
    out.push_back(info);
    return absl::OkStatus();
  }));
  return out;
}

TEST_P(ObjectStoreTest, PutGetRoundTrip) {
  ASSERT_OK_AND_ASSIGN(Digest d, store().Put("hello world"));
  EXPECT_EQ(d, Sha256::Of("hello world"));
  ASSERT_OK_AND_ASSIGN(std::string got, store().Get(d));
  EXPECT_EQ(got, "hello world");
  ASSERT_OK_AND_ASSIGN(bool has, store().Has(d));
  EXPECT_TRUE(has);
  ASSERT_OK_AND_ASSIGN(uint64_t size, store().Size(d));
  EXPECT_EQ(size, 11u);
  EXPECT_OK(store().Verify(d));
}

TEST_P(ObjectStoreTest, EmptyObject) {
  ASSERT_OK_AND_ASSIGN(Digest d, store().Put(""));
  EXPECT_EQ(d.ToHex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ASSERT_OK_AND_ASSIGN(std::string got, store().Get(d));
  EXPECT_EQ(got, "");
  ASSERT_OK_AND_ASSIGN(auto reader, store().Open(d));
  EXPECT_EQ(reader->size(), 0u);
  char c;
  ASSERT_OK_AND_ASSIGN(size_t n, reader->Read(&c, 1));
  EXPECT_EQ(n, 0u);
}

TEST_P(ObjectStoreTest, SameContentIsStoredOnce) {
  ASSERT_OK_AND_ASSIGN(Digest a, store().Put("same bytes"));
  ASSERT_OK_AND_ASSIGN(auto w, store().NewWriter());
  ASSERT_OK(w->Append("same "));
  ASSERT_OK(w->Append("bytes"));
  ASSERT_OK_AND_ASSIGN(ObjectInfo info, w->Commit());
  EXPECT_EQ(info.digest, a);
  EXPECT_EQ(info.size, 10u);
  ASSERT_OK_AND_ASSIGN(Digest b, store().Put("other"));
  std::vector<ObjectInfo> all = ListAll(store());
  ASSERT_EQ(all.size(), 2u);
  std::set<Digest> digests = {all[0].digest, all[1].digest};
  EXPECT_EQ(digests, (std::set<Digest>{a, b}));
  ASSERT_OK_AND_ASSIGN(int pending, harness_->PendingWritesForTest());
  EXPECT_EQ(pending, 0);
}

TEST_P(ObjectStoreTest, PutHashedStoresUnderTheGivenDigest) {
  const std::string data = Pattern(300000, 7);
  const Digest d = Sha256::Of(data);
  ASSERT_OK(store().PutHashed(d, data));
  ASSERT_OK_AND_ASSIGN(std::string got, store().Get(d));
  EXPECT_EQ(got, data);
  ASSERT_OK(store().PutHashed(d, data));  // again: stored once
  EXPECT_EQ(ListAll(store()).size(), 1u);
  ASSERT_OK_AND_ASSIGN(int pending, harness_->PendingWritesForTest());
  EXPECT_EQ(pending, 0);
}

TEST_P(ObjectStoreTest, WriteBatchObjectsAppearAtCommit) {
  ASSERT_OK_AND_ASSIGN(Digest existing, store().Put("already here"));
  ASSERT_OK_AND_ASSIGN(auto batch, store().NewWriteBatch());
  const std::string big = Pattern(200000, 3);
  ASSERT_OK(batch->PutHashed(Sha256::Of(big), big));
  ASSERT_OK_AND_ASSIGN(Digest small, batch->Put("small"));
  ASSERT_OK(batch->PutHashed(existing, "already here"));
  ASSERT_OK(batch->Put("small").status());  // twice in one batch
  ASSERT_OK(batch->Commit());
  ASSERT_OK_AND_ASSIGN(std::string got, store().Get(Sha256::Of(big)));
  EXPECT_EQ(got, big);
  ASSERT_OK_AND_ASSIGN(std::string s, store().Get(small));
  EXPECT_EQ(s, "small");
  EXPECT_EQ(ListAll(store()).size(), 3u);
  ASSERT_OK_AND_ASSIGN(int pending, harness_->PendingWritesForTest());
  EXPECT_EQ(pending, 0);
}

TEST_P(ObjectStoreTest, AbandonedWriteBatchLeavesNothing) {
  {
    ASSERT_OK_AND_ASSIGN(auto batch, store().NewWriteBatch());
    ASSERT_OK(batch->Put(Pattern(100000, 4)).status());
    ASSERT_OK(batch->Put("x").status());
  }
  EXPECT_EQ(ListAll(store()).size(), 0u);
  ASSERT_OK_AND_ASSIGN(int pending, harness_->PendingWritesForTest());
  EXPECT_EQ(pending, 0);
}

TEST_P(ObjectStoreTest, PutAgainFreshensTheObject) {
  ASSERT_OK_AND_ASSIGN(Digest d, store().Put("reused bytes"));
  std::vector<ObjectInfo> before = ListAll(store());
  ASSERT_EQ(before.size(), 1u);
  ASSERT_GT(before[0].mtime_micros, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_OK_AND_ASSIGN(Digest again, store().Put("reused bytes"));
  EXPECT_EQ(again, d);
  std::vector<ObjectInfo> after = ListAll(store());
  ASSERT_EQ(after.size(), 1u);
  EXPECT_GT(after[0].mtime_micros, before[0].mtime_micros);
}

TEST_P(ObjectStoreTest, StreamsALargeObject) {
  constexpr size_t kChunk = 1 << 20;
  constexpr int kChunks = 64;
  Sha256 expected;
  ASSERT_OK_AND_ASSIGN(auto w, store().NewWriter());
  for (int i = 0; i < kChunks; ++i) {
    std::string chunk = Pattern(kChunk, i);
    expected.Update(chunk);
    ASSERT_OK(w->Append(chunk));
  }
  ASSERT_OK_AND_ASSIGN(ObjectInfo info, w->Commit());
  const Digest want = expected.Finish();
  EXPECT_EQ(info.digest, want);
  EXPECT_EQ(info.size, kChunk * kChunks);

  // Stream it back out in odd-sized reads, checking every chunk.
  ASSERT_OK_AND_ASSIGN(auto r, store().Open(info.digest));
  EXPECT_EQ(r->size(), kChunk * kChunks);
  std::string buf(700 * 1024 + 3, '\0');
  Sha256 seen;
  uint64_t total = 0;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(size_t n, r->Read(buf.data(), buf.size()));
    if (n == 0) break;
    seen.Update(std::string_view(buf.data(), n));
    total += n;
  }
  EXPECT_EQ(total, kChunk * kChunks);
  EXPECT_EQ(seen.Finish(), want);
}

TEST_P(ObjectStoreTest, MixedAppendSizes) {
  // Exercises small appends, appends that straddle a buffer boundary and
  // appends larger than any buffer.
  std::string all;
  ASSERT_OK_AND_ASSIGN(auto w, store().NewWriter());
  uint32_t seed = 0;
  for (size_t size : {size_t{1}, size_t{7}, size_t{(1 << 20) - 3}, size_t{5}, size_t{(2 << 20) + 5}, size_t{0},
                      size_t{100000}, size_t{(1 << 20)}, size_t{3}}) {
    std::string piece = Pattern(size, ++seed);
    all += piece;
    ASSERT_OK(w->Append(piece));
  }
  ASSERT_OK_AND_ASSIGN(ObjectInfo info, w->Commit());
  EXPECT_EQ(info.digest, Sha256::Of(all));
  EXPECT_EQ(info.size, all.size());
  ASSERT_OK_AND_ASSIGN(std::string got, store().Get(info.digest));
  EXPECT_TRUE(got == all);
}

TEST_P(ObjectStoreTest, RangeReads) {
  ASSERT_OK_AND_ASSIGN(Digest d, store().Put("0123456789"));
  ASSERT_OK_AND_ASSIGN(auto r, store().OpenRange(d, 2, 3));
  EXPECT_EQ(r->size(), 3u);
  ASSERT_OK_AND_ASSIGN(std::string s, ReadAll(*r, 2));
  EXPECT_EQ(s, "234");

  ASSERT_OK_AND_ASSIGN(r, store().OpenRange(d, 8, 100));  // Clamped.
  EXPECT_EQ(r->size(), 2u);
  ASSERT_OK_AND_ASSIGN(s, ReadAll(*r, 64));
  EXPECT_EQ(s, "89");

  ASSERT_OK_AND_ASSIGN(r, store().OpenRange(d, 0, UINT64_MAX));
  ASSERT_OK_AND_ASSIGN(s, ReadAll(*r, 4));
  EXPECT_EQ(s, "0123456789");

  ASSERT_OK_AND_ASSIGN(r, store().OpenRange(d, 10, 5));  // Empty range at the end.
  EXPECT_EQ(r->size(), 0u);
  ASSERT_OK_AND_ASSIGN(s, ReadAll(*r, 4));
  EXPECT_EQ(s, "");

  EXPECT_THAT(store().OpenRange(d, 11, 1), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(store().OpenRange(Missing(), 0, 1), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(ObjectStoreTest, HasSizeDeleteList) {
  ASSERT_OK_AND_ASSIGN(Digest a, store().Put("a"));
  ASSERT_OK_AND_ASSIGN(Digest b, store().Put("bb"));
  ASSERT_OK_AND_ASSIGN(Digest c, store().Put("ccc"));
  std::vector<ObjectInfo> all = ListAll(store());
  ASSERT_EQ(all.size(), 3u);
  for (const ObjectInfo& info : all) {
    const uint64_t want = info.digest == a ? 1 : info.digest == b ? 2 : info.digest == c ? 3 : 0;
    EXPECT_EQ(info.size, want);
  }

  ASSERT_OK(store().Delete(b));
  ASSERT_OK_AND_ASSIGN(bool has, store().Has(b));
  EXPECT_FALSE(has);
  EXPECT_THAT(store().Size(b), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().Get(b), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(store().Delete(b));  // Deleting an absent object is fine.
  EXPECT_EQ(ListAll(store()).size(), 2u);

  // List stops at the first error from the callback and returns it.
  int calls = 0;
  EXPECT_THAT(store().List([&](const ObjectInfo&) {
    ++calls;
    return absl::CancelledError("stop");
  }),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(calls, 1);
}

TEST_P(ObjectStoreTest, MissingObjectsAreNotFound) {
  const Digest d = Missing();
  EXPECT_THAT(store().Open(d), StatusIs(absl::StatusCode::kNotFound, HasSubstr(d.ToHex())));
  EXPECT_THAT(store().Size(d), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().Get(d), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store().Verify(d), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(bool has, store().Has(d));
  EXPECT_FALSE(has);
  EXPECT_TRUE(ListAll(store()).empty());
}

TEST_P(ObjectStoreTest, CorruptionIsDataLossNeverBadBytes) {
  const std::string data = Pattern(3 << 20, 42);
  ASSERT_OK_AND_ASSIGN(Digest d, store().Put(data));
  ASSERT_OK(harness_->FlipByteForTest(d, data.size() - 10));

  EXPECT_THAT(store().Get(d), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(d.ToHex())));
  EXPECT_THAT(store().Verify(d), StatusIs(absl::StatusCode::kDataLoss));

  // A streaming reader never hands out the chunk holding the bad byte.
  ASSERT_OK_AND_ASSIGN(auto r, store().Open(d));
  std::string partial;
  EXPECT_THAT(ReadAll(*r, 1 << 20, &partial), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(partial.size(), 2u << 20);
  EXPECT_TRUE(partial == data.substr(0, partial.size()));
  // And keeps failing.
  char c;
  EXPECT_THAT(r->Read(&c, 1), StatusIs(absl::StatusCode::kDataLoss));

  // A single read of the whole object returns nothing at all.
  ASSERT_OK_AND_ASSIGN(r, store().Open(d));
  std::string whole(data.size(), '\0');
  EXPECT_THAT(r->Read(whole.data(), whole.size()), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_P(ObjectStoreTest, WrongSizeIsDataLoss) {
  ASSERT_OK_AND_ASSIGN(Digest shorter, store().Put(Pattern(5000, 1)));
  ASSERT_OK(harness_->TruncateForTest(shorter, 4000));
  EXPECT_THAT(store().Get(shorter), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store().Verify(shorter), StatusIs(absl::StatusCode::kDataLoss));

  ASSERT_OK_AND_ASSIGN(Digest longer, store().Put(Pattern(5000, 2)));
  ASSERT_OK(harness_->AppendGarbageForTest(longer));
  EXPECT_THAT(store().Get(longer), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_P(ObjectStoreTest, RepeatedPutRepairsATruncatedCopy) {
  const std::string data = Pattern(5000, 3);
  ASSERT_OK_AND_ASSIGN(Digest d, store().Put(data));
  ASSERT_OK(harness_->TruncateForTest(d, 10));
  ASSERT_OK_AND_ASSIGN(Digest again, store().Put(data));
  EXPECT_EQ(again, d);
  EXPECT_OK(store().Verify(d));
}

TEST_P(ObjectStoreTest, AbandonedWriterLeavesNothing) {
  {
    ASSERT_OK_AND_ASSIGN(auto w, store().NewWriter());
    ASSERT_OK(w->Append(Pattern(3 << 20, 9)));
  }
  EXPECT_TRUE(ListAll(store()).empty());
  ASSERT_OK_AND_ASSIGN(bool has, store().Has(Sha256::Of(Pattern(3 << 20, 9))));
  EXPECT_FALSE(has);
  ASSERT_OK_AND_ASSIGN(int pending, harness_->PendingWritesForTest());
  EXPECT_EQ(pending, 0);
}

TEST_P(ObjectStoreTest, WriterIsSingleUse) {
  ASSERT_OK_AND_ASSIGN(auto w, store().NewWriter());
  ASSERT_OK(w->Append("x"));
  ASSERT_OK(w->Commit().status());
  EXPECT_THAT(w->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(w->Append("y"), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(std::string got, store().Get(Sha256::Of("x")));
  EXPECT_EQ(got, "x");
}

TEST_P(ObjectStoreTest, ConcurrentWritersAndReaders) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Half the objects are shared between threads (concurrent dedup).
        std::string data = Pattern(1000 + i, i % 2 == 0 ? 1000 + i : t * 100 + i);
        absl::StatusOr<Digest> d = store().Put(data);
        ASSERT_OK(d.status());
        absl::StatusOr<std::string> got = store().Get(*d);
        ASSERT_OK(got.status());
        EXPECT_TRUE(*got == data);
      }
    });
  }
  for (auto& th : threads) th.join();
  const size_t shared = (kPerThread + 1) / 2, own = kPerThread / 2;
  EXPECT_EQ(ListAll(store()).size(), shared + kThreads * own);
  ASSERT_OK_AND_ASSIGN(int pending, harness_->PendingWritesForTest());
  EXPECT_EQ(pending, 0);
}

// Fault injection: a failure anywhere in a write leaves no object and no
// partial object behind, and the store works afterwards.
TEST_P(ObjectStoreTest, FailedCommitLeavesNoObject) {
  FaultInjectionEnv* faults = harness_->faults();
  if (faults == nullptr) GTEST_SKIP() << "no fault injection for this implementation";
  const std::string data = Pattern(3 << 20, 77);
  const Digest d = Sha256::Of(data);
  for (Op op : {Op::kAppend, Op::kSync, Op::kClose, Op::kCreateDirs, Op::kRename}) {
    SCOPED_TRACE(std::string(FaultInjectionEnv::OpName(op)));
    faults->FailAfter(op, 0, absl::UnavailableError("injected failure"));
    absl::Status s = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(auto w, store().NewWriter());
      RETURN_IF_ERROR(w->Append(data));
      return w->Commit().status();
    }();
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
    faults->Reset();
    ASSERT_OK_AND_ASSIGN(bool has, store().Has(d));
    EXPECT_FALSE(has);
    EXPECT_TRUE(ListAll(store()).empty());
    ASSERT_OK_AND_ASSIGN(int pending, harness_->PendingWritesForTest());
    EXPECT_EQ(pending, 0);
  }
  // Creating the writer itself can fail too.
  faults->FailAfter(Op::kCreate, 0, absl::ResourceExhaustedError("injected: no space"));
  EXPECT_THAT(store().NewWriter(), StatusIs(absl::StatusCode::kResourceExhausted));
  faults->FailWritesWithNoSpace();
  EXPECT_THAT(store().Put(data), StatusIs(absl::StatusCode::kResourceExhausted));
  faults->Reset();

  // The store works afterwards.
  ASSERT_OK_AND_ASSIGN(Digest put, store().Put(data));
  EXPECT_EQ(put, d);
  ASSERT_OK_AND_ASSIGN(std::string got, store().Get(d));
  EXPECT_TRUE(got == data);
}

TEST_P(ObjectStoreTest, ReadErrorsPropagate) {
  FaultInjectionEnv* faults = harness_->faults();
  if (faults == nullptr) GTEST_SKIP() << "no fault injection for this implementation";
  ASSERT_OK_AND_ASSIGN(Digest d, store().Put("readable"));
  faults->FailAfter(Op::kRead, 0, absl::InternalError("injected EIO"));
  EXPECT_THAT(store().Get(d), StatusIs(absl::StatusCode::kInternal, HasSubstr("EIO")));
  faults->Reset();
  EXPECT_OK(store().Verify(d));
}

}  // namespace
}  // namespace cairn::store
