// Encryption at rest: AES-256-GCM data keys, wrapped by the server's master
// key(s) kept in the data directory's `keys/` folder.
//
// Every encrypted dataset has its own random DataKey. Chunks and manifests of
// that dataset are sealed with it (AES-256-GCM, a fresh random 96-bit nonce
// per message, the caller's associated data bound in), so object files alone
// reveal nothing and a flipped bit anywhere is detected (kDataLoss), never
// returned. A DataKey is stored only wrapped (sealed) by a master key; the
// KeyRing holds the master keys. Rotation adds a new master key and re-wraps
// data keys with it; data is never re-encrypted. Format and operations:
// docs/encryption.md.
//
// On-disk layout of `keys/` (directory mode 0700, files mode 0600):
//   keys/master-000001.key   32 random bytes, hex-encoded, one line
//   keys/master-000002.key   ...; the highest number is the current key
//
// Thread-safety: DataKey is an immutable value, safe to share. KeyRing is
// thread-safe.
//
// Usage:
//   ASSIGN_OR_RETURN(auto ring, KeyRing::OpenOrCreate(env, data_dir + "/keys"));
//   DataKey key = DataKey::Generate();
//   ASSIGN_OR_RETURN(std::string wrapped, ring->Wrap(key));   // store this
//   std::string sealed = key.Seal("chunk bytes", /*aad=*/"dataset-id");
//   ASSIGN_OR_RETURN(std::string plain, key.Open(sealed, "dataset-id"));
//   ASSIGN_OR_RETURN(DataKey again, ring->Unwrap(wrapped));
#ifndef CAIRN_STORE_ENCRYPTION_H_
#define CAIRN_STORE_ENCRYPTION_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "base/env.h"
#include "base/sha256.h"
#include "base/status.h"

namespace cairn::store {

// Bytes a sealed message adds to its plaintext: 12-byte nonce + 16-byte tag.
inline constexpr size_t kSealOverhead = 28;

class DataKey {
 public:
  // A new key from the OS's CSPRNG (OpenSSL RAND_bytes).
  static DataKey Generate();
  // From 32 raw bytes; kInvalidArgument on any other length.
  static absl::StatusOr<DataKey> FromBytes(std::string_view raw);

  // nonce(12) || ciphertext || tag(16). `aad` is authenticated, not stored.
  std::string Seal(std::string_view plaintext, std::string_view aad) const;
  // Inverse of Seal. kDataLoss if the input is too short, was altered, or was
  // sealed with another key or another `aad`.
  absl::StatusOr<std::string> Open(std::string_view sealed, std::string_view aad) const;

  // HMAC-SHA256 of `data` under a subkey derived from this key (never the
  // encryption key itself): names an encrypted dataset's chunks in the index
  // without revealing their plaintext digests.
  Digest Mac(std::string_view data) const;

  std::string_view raw() const;  // the 32 key bytes (for wrapping only)

  // Copies are plain values; the destructor wipes the key bytes
  // (OPENSSL_cleanse) so that freed memory does not keep them.
  DataKey(const DataKey&) = default;
  DataKey& operator=(const DataKey&) = default;
  ~DataKey();

 private:
  DataKey() = default;
  std::array<uint8_t, 32> key_{};
  std::array<uint8_t, 32> mac_key_{};
};

// The server's master keys. File contents go through Env, but permissions
// are set and checked with POSIX calls on the paths (Env has no notion of
// modes), so a KeyRing needs a real local directory, not an in-memory Env.
// Keys are read once at OpenOrCreate: one process owns `keys/` at a time, and
// another process that rotated keys is seen only after reopening.
// Ownership: does not own `env`, which must outlive the ring.
class KeyRing {
 public:
  // Opens `dir`, creating it (0700) and a first master key (0600, written
  // with temp file + fsync + rename) if it holds none. kFailedPrecondition if
  // a key file is readable by group or others (the key may have leaked), or
  // malformed.
  static absl::StatusOr<std::unique_ptr<KeyRing>> OpenOrCreate(Env& env, const std::string& dir);
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;

  // Seals `key` under the current master key. The result starts with the
  // master key's number, so Unwrap finds the right key after a rotation.
  absl::StatusOr<std::string> Wrap(const DataKey& key) const;
  // kDataLoss if `wrapped` is damaged; kNotFound if its master key is gone.
  absl::StatusOr<DataKey> Unwrap(std::string_view wrapped) const;
  // The master key number `wrapped` was sealed with (kInvalidArgument if
  // malformed), to find what still needs re-wrapping.
  static absl::StatusOr<int> WrappedKeyNumber(std::string_view wrapped);

  // Creates a new current master key; returns its number. Existing wrapped
  // keys still unwrap with the older keys until those are retired.
  absl::StatusOr<int> Rotate();
  // Deletes master key `number` (after every data key was re-wrapped).
  // kFailedPrecondition for the current key.
  absl::Status Retire(int number);

  int current() const;
  std::vector<int> numbers() const;  // ascending
  const std::string& dir() const { return dir_; }

 private:
  KeyRing(Env& env, std::string dir) : env_(env), dir_(std::move(dir)) {}
  // Writes master key `number` (temp file, chmod 0600, fsync, rename, dir
  // fsync) and makes it current.
  absl::Status AddMasterLocked(int number) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Env& env_;
  const std::string dir_;
  mutable absl::Mutex mu_;
  std::vector<std::pair<int, DataKey>> masters_ ABSL_GUARDED_BY(mu_);  // ascending by number
};

}  // namespace cairn::store

#endif  // CAIRN_STORE_ENCRYPTION_H_
