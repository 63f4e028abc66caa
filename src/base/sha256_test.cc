#include "base/sha256.h"

#include "absl/container/flat_hash_set.h"
#include "base/testing.h"

namespace cairn {
namespace {

using ::cairn::testing::StatusIs;

constexpr char kEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256::Of("").ToHex(), kEmpty);
  EXPECT_EQ(Sha256::Of("abc").ToHex(), kAbc);
  EXPECT_EQ(Sha256::Of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").ToHex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 h;
  EXPECT_EQ(h.Finish().ToHex(), kEmpty);
}

TEST(Sha256Test, IncrementalEqualsOneShotAndFinishResets) {
  std::string data(1 << 20, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 251);
  Sha256 h;
  for (size_t off = 0; off < data.size(); off += 4097) h.Update(std::string_view(data).substr(off, 4097));
  EXPECT_EQ(h.Finish(), Sha256::Of(data));
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.Finish().ToHex(), kAbc);
  // A million 'a's: the FIPS 180-2 long vector.
  for (int i = 0; i < 1000; ++i) h.Update(std::string(1000, 'a'));
  EXPECT_EQ(h.Finish().ToHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(DigestTest, HexRoundTrip) {
  ASSERT_OK_AND_ASSIGN(Digest d, Digest::FromHex(kAbc));
  EXPECT_EQ(d, Sha256::Of("abc"));
  EXPECT_EQ(d.ToHex(), kAbc);
  std::string upper(kAbc);
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  ASSERT_OK_AND_ASSIGN(Digest d2, Digest::FromHex(upper));
  EXPECT_EQ(d2, d);
}

TEST(DigestTest, RejectsBadHex) {
  EXPECT_TRUE(Digest::IsValidHex(kAbc));
  EXPECT_FALSE(Digest::IsValidHex(""));
  EXPECT_FALSE(Digest::IsValidHex(std::string(kAbc).substr(1)));
  EXPECT_FALSE(Digest::IsValidHex(std::string(kAbc) + "0"));
  std::string bad(kAbc);
  bad[10] = 'g';
  EXPECT_FALSE(Digest::IsValidHex(bad));
  EXPECT_THAT(Digest::FromHex(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Digest::FromHex("xyz"), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("xyz")));
}

TEST(DigestTest, OrderingAndHashing) {
  Digest a = Sha256::Of("a"), b = Sha256::Of("b");
  EXPECT_NE(a, b);
  EXPECT_TRUE(a < b || b < a);
  absl::flat_hash_set<Digest> set = {a, b, Sha256::Of("a")};
  EXPECT_EQ(set.size(), 2u);
}

}  // namespace
}  // namespace cairn
