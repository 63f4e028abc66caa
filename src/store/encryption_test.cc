#include "store/encryption.h"

#include <sys/stat.h>

#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/env.h"
#include "base/testing.h"

namespace cairn::store {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

int ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

// The master key number in `wrapped`, or -1 if it is malformed.
int NumberOf(std::string_view wrapped) {
  absl::StatusOr<int> n = KeyRing::WrappedKeyNumber(wrapped);
  return n.ok() ? *n : -1;
}

TEST(DataKeyTest, SealThenOpenRoundTrips) {
  DataKey key = DataKey::Generate();
  for (std::string plain : {std::string(), std::string("x"), std::string("chunk bytes"), std::string(100000, 'z'),
                            std::string("\0\1\2", 3)}) {
    std::string sealed = key.Seal(plain, "dataset-1");
    EXPECT_EQ(sealed.size(), plain.size() + kSealOverhead);
    if (plain.size() > 8) {
      EXPECT_EQ(sealed.find(plain), std::string::npos);
    }
    ASSERT_OK_AND_ASSIGN(std::string back, key.Open(sealed, "dataset-1"));
    EXPECT_EQ(back, plain);
  }
}

TEST(DataKeyTest, SealUsesAFreshNonceEachTime) {
  DataKey key = DataKey::Generate();
  EXPECT_NE(key.Seal("same", "aad"), key.Seal("same", "aad"));
}

TEST(DataKeyTest, AnyAlteredByteIsDataLoss) {
  DataKey key = DataKey::Generate();
  const std::string plain = "the quick brown fox";
  const std::string sealed = key.Seal(plain, "aad");
  // Positions 0..11: nonce; 12..12+len-1: ciphertext; the last 16: tag.
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}}) {
      std::string bad = sealed;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      EXPECT_THAT(key.Open(bad, "aad"), StatusIs(absl::StatusCode::kDataLoss)) << "byte " << i;
    }
  }
  // Truncated or extended messages as well.
  EXPECT_THAT(key.Open(sealed.substr(0, sealed.size() - 1), "aad"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(key.Open(sealed + "x", "aad"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(DataKeyTest, WrongAadIsDataLoss) {
  DataKey key = DataKey::Generate();
  std::string sealed = key.Seal("secret", "dataset-1");
  EXPECT_THAT(key.Open(sealed, "dataset-2"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(key.Open(sealed, ""), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(DataKeyTest, WrongKeyIsDataLoss) {
  DataKey a = DataKey::Generate();
  DataKey b = DataKey::Generate();
  EXPECT_THAT(b.Open(a.Seal("secret", "aad"), "aad"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(DataKeyTest, ShortInputIsDataLoss) {
  DataKey key = DataKey::Generate();
  for (size_t n : {size_t{0}, size_t{1}, size_t{12}, kSealOverhead - 1}) {
    EXPECT_THAT(key.Open(std::string(n, 'a'), "aad"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shorter")))
        << n;
  }
}

TEST(DataKeyTest, FromBytesRoundTripsAndRejectsOtherLengths) {
  DataKey key = DataKey::Generate();
  ASSERT_OK_AND_ASSIGN(DataKey copy, DataKey::FromBytes(key.raw()));
  EXPECT_EQ(copy.raw(), key.raw());
  ASSERT_OK_AND_ASSIGN(std::string plain, copy.Open(key.Seal("hello", "a"), "a"));
  EXPECT_EQ(plain, "hello");
  EXPECT_THAT(DataKey::FromBytes(std::string(31, 'k')), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DataKey::FromBytes(std::string(33, 'k')), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(DataKey::Generate().raw(), key.raw());
}

TEST(DataKeyTest, MacIsDeterministicPerKeyAndDiffersFromSha256) {
  ASSERT_OK_AND_ASSIGN(DataKey a, DataKey::FromBytes(std::string(32, 'a')));
  ASSERT_OK_AND_ASSIGN(DataKey a2, DataKey::FromBytes(std::string(32, 'a')));
  ASSERT_OK_AND_ASSIGN(DataKey b, DataKey::FromBytes(std::string(32, 'b')));
  EXPECT_EQ(a.Mac("chunk"), a.Mac("chunk"));
  EXPECT_EQ(a.Mac("chunk"), a2.Mac("chunk"));
  EXPECT_NE(a.Mac("chunk"), a.Mac("chunk2"));
  EXPECT_NE(a.Mac("chunk"), b.Mac("chunk"));
  EXPECT_NE(a.Mac("chunk"), Sha256::Of("chunk"));
  EXPECT_EQ(a.Mac(""), a2.Mac(""));
  EXPECT_NE(a.Mac(""), b.Mac(""));
}

// Pins the documented derivation (docs/encryption.md): mac key =
// HMAC-SHA256(key, "cairn mac key v1"); Mac(d) = HMAC-SHA256(mac key, d).
// Changing it would rename every chunk of every encrypted dataset.
TEST(DataKeyTest, MacMatchesTheDocumentedDerivation) {
  ASSERT_OK_AND_ASSIGN(DataKey zero, DataKey::FromBytes(std::string(32, '\0')));
  EXPECT_EQ(zero.Mac("abc").ToHex(), "290a58911fd224242fb0fedcb5c7be79d09ecd5ee65cf4be9e767e3a814593bf");
}

class KeyRingTest : public ::testing::Test {
 protected:
  std::string KeysDir() const { return tmp_.path() + "/data/keys"; }
  ScopedTempDir tmp_;
  std::unique_ptr<Env> env_ = NewPosixEnv();
};

TEST_F(KeyRingTest, CreatesPrivateDirectoryAndKeyFile) {
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  EXPECT_EQ(ring->current(), 1);
  EXPECT_THAT(ring->numbers(), ElementsAre(1));
  EXPECT_EQ(ring->dir(), KeysDir());
  EXPECT_EQ(ModeOf(KeysDir()), 0700);
  const std::string file = KeysDir() + "/master-000001.key";
  EXPECT_EQ(ModeOf(file), 0600);
  ASSERT_OK_AND_ASSIGN(std::string text, env_->ReadFileToString(file));
  EXPECT_EQ(text.size(), 65u);
  EXPECT_EQ(text.back(), '\n');
  ASSERT_OK_AND_ASSIGN(auto children, env_->GetChildren(KeysDir()));
  EXPECT_EQ(children.size(), 1u);  // no temp file left behind
}

TEST_F(KeyRingTest, ReopenGivesTheSameKey) {
  std::string wrapped;
  DataKey key = DataKey::Generate();
  {
    ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
    ASSERT_OK_AND_ASSIGN(wrapped, ring->Wrap(key));
  }
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  EXPECT_THAT(ring->numbers(), ElementsAre(1));
  ASSERT_OK_AND_ASSIGN(DataKey back, ring->Unwrap(wrapped));
  EXPECT_EQ(back.raw(), key.raw());
}

TEST_F(KeyRingTest, RefusesAKeyFileReadableByOthers) {
  { ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir())); }
  const std::string file = KeysDir() + "/master-000001.key";
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  EXPECT_THAT(KeyRing::OpenOrCreate(*env_, KeysDir()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chmod 600 " + file)));
  ASSERT_EQ(::chmod(file.c_str(), 0640), 0);
  EXPECT_THAT(KeyRing::OpenOrCreate(*env_, KeysDir()), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  EXPECT_THAT(KeyRing::OpenOrCreate(*env_, KeysDir()), IsOk());
}

TEST_F(KeyRingTest, RefusesMalformedKeyFiles) {
  ASSERT_OK(env_->CreateDirs(KeysDir()));
  const std::string file = KeysDir() + "/master-000001.key";
  for (std::string bad : {std::string("abc\n"), std::string(64, 'g') + "\n", std::string(66, 'a'), std::string()}) {
    ASSERT_OK(env_->WriteFileAtomic(file, bad));
    ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
    EXPECT_THAT(KeyRing::OpenOrCreate(*env_, KeysDir()),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("malformed")))
        << bad;
  }
  ASSERT_OK(env_->DeleteFile(file));
  ASSERT_OK(env_->WriteFileAtomic(KeysDir() + "/master-1.key", std::string(64, 'a') + "\n"));
  EXPECT_THAT(KeyRing::OpenOrCreate(*env_, KeysDir()), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(KeyRingTest, TightensAnExistingDirectoryBeforeWritingKeys) {
  ASSERT_OK(env_->CreateDirs(KeysDir()));
  ASSERT_EQ(::chmod(KeysDir().c_str(), 0755), 0);
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  EXPECT_EQ(ModeOf(KeysDir()), 0700);
  EXPECT_EQ(ModeOf(KeysDir() + "/master-000001.key"), 0600);
}

TEST_F(KeyRingTest, IgnoresLeftoverTempFiles) {
  ASSERT_OK(env_->CreateDirs(KeysDir()));
  ASSERT_OK(env_->WriteFileAtomic(KeysDir() + "/master-000001.key.tmp-0123456789abcdef", "partial"));
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  EXPECT_THAT(ring->numbers(), ElementsAre(1));
}

TEST_F(KeyRingTest, RotateKeepsOldWrappedKeysReadable) {
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  DataKey key = DataKey::Generate();
  ASSERT_OK_AND_ASSIGN(std::string old_wrapped, ring->Wrap(key));
  ASSERT_OK_AND_ASSIGN(int number, ring->Rotate());
  EXPECT_EQ(number, 2);
  EXPECT_EQ(ring->current(), 2);
  EXPECT_THAT(ring->numbers(), ElementsAre(1, 2));
  EXPECT_EQ(ModeOf(KeysDir() + "/master-000002.key"), 0600);

  ASSERT_OK_AND_ASSIGN(DataKey back, ring->Unwrap(old_wrapped));
  EXPECT_EQ(back.raw(), key.raw());
  ASSERT_OK_AND_ASSIGN(std::string new_wrapped, ring->Wrap(back));
  EXPECT_EQ(NumberOf(old_wrapped), 1);
  EXPECT_EQ(NumberOf(new_wrapped), 2);

  // After a reopen the newest key is still current.
  ring.reset();
  ASSERT_OK_AND_ASSIGN(ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  EXPECT_EQ(ring->current(), 2);
  ASSERT_OK_AND_ASSIGN(back, ring->Unwrap(new_wrapped));
  EXPECT_EQ(back.raw(), key.raw());
}

TEST_F(KeyRingTest, RetireRefusesCurrentAndForgetsTheKey) {
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  DataKey key = DataKey::Generate();
  ASSERT_OK_AND_ASSIGN(std::string wrapped1, ring->Wrap(key));
  EXPECT_THAT(ring->Retire(1), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(ring->Rotate().status());
  EXPECT_THAT(ring->Retire(2), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(ring->Retire(7), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(ring->Retire(1));
  EXPECT_THAT(ring->numbers(), ElementsAre(2));
  EXPECT_FALSE(env_->FileExists(KeysDir() + "/master-000001.key"));
  EXPECT_THAT(ring->Unwrap(wrapped1), StatusIs(absl::StatusCode::kNotFound));

  // A reopened ring does not bring it back (and does not make a new key 1).
  ring.reset();
  ASSERT_OK_AND_ASSIGN(ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  EXPECT_THAT(ring->numbers(), ElementsAre(2));
  EXPECT_THAT(ring->Unwrap(wrapped1), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(KeyRingTest, DamagedWrappedKeyIsDataLoss) {
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  ASSERT_OK_AND_ASSIGN(std::string wrapped, ring->Wrap(DataKey::Generate()));
  for (size_t i = 0; i < wrapped.size(); ++i) {
    std::string bad = wrapped;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    // Bytes 4..7 hold the key number: a flip there may name a key this ring
    // does not hold (kNotFound); every other flip fails the header check or
    // authentication.
    auto result = ring->Unwrap(bad);
    if (i >= 4 && i < 8) {
      EXPECT_THAT(result.status().code(), ::testing::AnyOf(absl::StatusCode::kDataLoss, absl::StatusCode::kNotFound))
          << "byte " << i;
    } else {
      EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss)) << "byte " << i;
    }
  }
  EXPECT_THAT(ring->Unwrap(wrapped.substr(1)), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ring->Unwrap(""), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(KeyRingTest, WrappedKeyFromAnotherRingDoesNotUnwrap) {
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env_, KeysDir()));
  ASSERT_OK_AND_ASSIGN(auto other, KeyRing::OpenOrCreate(*env_, tmp_.path() + "/other/keys"));
  ASSERT_OK_AND_ASSIGN(std::string wrapped, other->Wrap(DataKey::Generate()));
  EXPECT_THAT(ring->Unwrap(wrapped), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(WrappedKeyNumberTest, ReadsTheHeaderAndRejectsMalformedInput) {
  ScopedTempDir tmp;
  auto env = NewPosixEnv();
  ASSERT_OK_AND_ASSIGN(auto ring, KeyRing::OpenOrCreate(*env, tmp.path() + "/keys"));
  ASSERT_OK_AND_ASSIGN(std::string wrapped, ring->Wrap(DataKey::Generate()));
  // Layout: "CKW", version 1, number (uint32 BE), nonce, sealed key, tag.
  EXPECT_EQ(wrapped.size(), 8 + kSealOverhead + 32);
  EXPECT_EQ(wrapped.substr(0, 8), std::string("CKW\x01\0\0\0\x01", 8));
  EXPECT_EQ(NumberOf(wrapped), 1);

  std::string bad_magic = wrapped;
  bad_magic[0] = 'X';
  std::string bad_version = wrapped;
  bad_version[3] = 2;
  std::string zero = wrapped;
  zero[7] = 0;
  std::string huge = wrapped;
  huge[4] = '\x7f';
  for (const std::string& bad : {std::string(), wrapped.substr(0, 20), wrapped + "x", bad_magic, bad_version, zero,
                                 huge}) {
    EXPECT_THAT(KeyRing::WrappedKeyNumber(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

}  // namespace
}  // namespace cairn::store
