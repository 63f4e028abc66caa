#include "store/encryption.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "base/ids.h"

namespace cairn::store {
namespace {

constexpr size_t kKeySize = 32;
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
static_assert(kSealOverhead == kNonceSize + kTagSize);

// Label of the MAC subkey derivation: mac_key = HMAC-SHA256(key, label). A
// new label would rename every chunk of every encrypted dataset.
constexpr std::string_view kMacKeyLabel = "cairn mac key v1";

// Wrapped data key: magic "CKW", version 1, master key number (uint32 BE),
// then Seal(raw key) with aad = "cairn-wrap" || the 8 header bytes.
constexpr std::string_view kWrapMagic = "CKW";
constexpr uint8_t kWrapVersion = 1;
constexpr size_t kWrapHeaderSize = 8;
constexpr size_t kWrappedSize = kWrapHeaderSize + kSealOverhead + kKeySize;
constexpr std::string_view kWrapAadLabel = "cairn-wrap";

// Key file names are master-NNNNNN.key: six digits, so at most 999999 keys.
constexpr std::string_view kKeyPrefix = "master-";
constexpr std::string_view kKeySuffix = ".key";
constexpr int kMaxKeyNumber = 999999;

// EVP lengths are ints; feed longer inputs in pieces of this size.
constexpr size_t kMaxEvpPiece = size_t{1} << 30;

// Fetched once: an OpenSSL 3 lookup per message would cost more than sealing
// a small manifest. The EVP_CIPHER is immutable and shared.
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* cipher = [] {
    const EVP_CIPHER* fetched = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    return fetched != nullptr ? fetched : EVP_aes_256_gcm();
  }();
  return cipher;
}

// OpenSSL fails here only when out of memory or broken; a caller could not
// recover, and returning unauthenticated output would be worse.
void Require(bool ok, const char* what) {
  if (!ok) {
    fmt::print(stderr, "cairn: OpenSSL {} failed\n", what);
    std::abort();
  }
}

struct CipherCtx {
  CipherCtx() : ctx(EVP_CIPHER_CTX_new()) { Require(ctx != nullptr, "EVP_CIPHER_CTX_new"); }
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
  CipherCtx(const CipherCtx&) = delete;
  CipherCtx& operator=(const CipherCtx&) = delete;
  EVP_CIPHER_CTX* ctx;
};

const unsigned char* Bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

void FeedAad(EVP_CIPHER_CTX* ctx, std::string_view aad, bool encrypt) {
  while (!aad.empty()) {
    const size_t n = std::min(aad.size(), kMaxEvpPiece);
    int out_len = 0;
    const int ok = encrypt ? EVP_EncryptUpdate(ctx, nullptr, &out_len, Bytes(aad), static_cast<int>(n))
                           : EVP_DecryptUpdate(ctx, nullptr, &out_len, Bytes(aad), static_cast<int>(n));
    Require(ok == 1, "GCM aad");
    aad.remove_prefix(n);
  }
}

void PutUint32Be(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

uint32_t GetUint32Be(std::string_view in) {
  const auto* p = Bytes(in);
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

std::string WrapHeader(int number) {
  std::string header(kWrapMagic);
  header.push_back(static_cast<char>(kWrapVersion));
  PutUint32Be(header, static_cast<uint32_t>(number));
  return header;
}

std::string WrapAad(std::string_view header) {
  std::string aad(kWrapAadLabel);
  aad.append(header);
  return aad;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string KeyFileName(int number) { return fmt::format("{}{:06d}{}", kKeyPrefix, number, kKeySuffix); }

// The number in "master-NNNNNN.key"; 0 for other names (temp files, strays);
// -1 for a name that looks like a key file but is malformed.
int ParseKeyFileName(std::string_view name) {
  if (name.substr(0, kKeyPrefix.size()) != kKeyPrefix) return 0;
  if (name.size() < kKeySuffix.size() ||
      name.substr(name.size() - kKeySuffix.size()) != kKeySuffix) {
    return 0;
  }
  std::string_view digits = name.substr(kKeyPrefix.size(), name.size() - kKeyPrefix.size() - kKeySuffix.size());
  if (digits.size() != 6) return -1;
  int number = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    number = number * 10 + (c - '0');
  }
  return number == 0 ? -1 : number;
}

absl::Status ErrnoStatus(std::string_view op, const std::string& path, int err) {
  std::string message = fmt::format("{} {}: {}", op, path, std::generic_category().message(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

// Env has no notion of permissions, so modes are read and set with POSIX
// calls on the path: the key ring lives on a real local disk.
absl::Status CheckPrivate(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(fmt::format("master key {} is not a regular file", path));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(fmt::format(
        "master key {} is accessible by group or others (mode {:04o}); the key may have leaked. Check who could "
        "read it, then restrict it with `chmod 600 {}`",
        path, st.st_mode & 07777, path));
  }
  return absl::OkStatus();
}

absl::Status Chmod(const std::string& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0) return ErrnoStatus("chmod", path, errno);
  return absl::OkStatus();
}

absl::StatusOr<DataKey> ParseKeyFile(std::string contents, const std::string& path) {
  std::string_view text = contents;
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  std::string raw(kKeySize, '\0');
  bool valid = text.size() == 2 * kKeySize;
  for (size_t i = 0; valid && i < kKeySize; ++i) {
    const int hi = HexValue(text[2 * i]);
    const int lo = HexValue(text[2 * i + 1]);
    valid = hi >= 0 && lo >= 0;
    if (valid) raw[i] = static_cast<char>(hi << 4 | lo);
  }
  absl::StatusOr<DataKey> key =
      valid ? DataKey::FromBytes(raw)
            : absl::StatusOr<DataKey>(absl::FailedPreconditionError(fmt::format(
                  "master key {} is malformed: expected {} hex characters and a newline", path, 2 * kKeySize)));
  OPENSSL_cleanse(raw.data(), raw.size());
  OPENSSL_cleanse(contents.data(), contents.size());
  return key;
}

}  // namespace

// ---------------------------------------------------------------------------
// DataKey

DataKey DataKey::Generate() {
  std::string raw(kKeySize, '\0');
  Require(RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(kKeySize)) == 1, "RAND_bytes");
  DataKey key = *FromBytes(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  return key;
}

absl::StatusOr<DataKey> DataKey::FromBytes(std::string_view raw) {
  if (raw.size() != kKeySize) {
    return absl::InvalidArgumentError(fmt::format("a data key has {} bytes, not {}", kKeySize, raw.size()));
  }
  DataKey key;
  std::memcpy(key.key_.data(), raw.data(), kKeySize);
  // A separate MAC key: chunk names never reuse the encryption key, so one
  // primitive's output can never help attack the other.
  unsigned int len = 0;
  Require(HMAC(EVP_sha256(), key.key_.data(), static_cast<int>(kKeySize), Bytes(kMacKeyLabel), kMacKeyLabel.size(),
               key.mac_key_.data(), &len) != nullptr &&
              len == key.mac_key_.size(),
          "HMAC");
  return key;
}

DataKey::~DataKey() {
  OPENSSL_cleanse(key_.data(), key_.size());
  OPENSSL_cleanse(mac_key_.data(), mac_key_.size());
}

std::string DataKey::Seal(std::string_view plaintext, std::string_view aad) const {
  std::string out(kNonceSize + plaintext.size() + kTagSize, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  // Random 96-bit nonces: with at most 2^32 messages per key the chance of a
  // repeat stays below 2^-32 (NIST SP 800-38D, 8.3). Every chunk and manifest
  // of one dataset together stay far below that.
  Require(RAND_bytes(nonce, static_cast<int>(kNonceSize)) == 1, "RAND_bytes");

  CipherCtx c;
  Require(EVP_EncryptInit_ex(c.ctx, Aes256Gcm(), nullptr, key_.data(), nonce) == 1, "EVP_EncryptInit_ex");
  FeedAad(c.ctx, aad, /*encrypt=*/true);
  auto* dst = nonce + kNonceSize;
  while (!plaintext.empty()) {
    const size_t n = std::min(plaintext.size(), kMaxEvpPiece);
    int out_len = 0;
    Require(EVP_EncryptUpdate(c.ctx, dst, &out_len, Bytes(plaintext), static_cast<int>(n)) == 1 &&
                static_cast<size_t>(out_len) == n,
            "EVP_EncryptUpdate");
    dst += n;
    plaintext.remove_prefix(n);
  }
  int final_len = 0;
  Require(EVP_EncryptFinal_ex(c.ctx, dst, &final_len) == 1 && final_len == 0, "EVP_EncryptFinal_ex");
  Require(EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), dst) == 1, "GCM tag");
  return out;
}

absl::StatusOr<std::string> DataKey::Open(std::string_view sealed, std::string_view aad) const {
  if (sealed.size() < kSealOverhead) {
    return absl::DataLossError(
        fmt::format("sealed data is {} bytes, shorter than the {}-byte nonce and tag", sealed.size(), kSealOverhead));
  }
  const unsigned char* nonce = Bytes(sealed);
  std::string_view ciphertext = sealed.substr(kNonceSize, sealed.size() - kSealOverhead);
  std::string tag(sealed.substr(sealed.size() - kTagSize));

  CipherCtx c;
  Require(EVP_DecryptInit_ex(c.ctx, Aes256Gcm(), nullptr, key_.data(), nonce) == 1, "EVP_DecryptInit_ex");
  FeedAad(c.ctx, aad, /*encrypt=*/false);
  std::string out(ciphertext.size(), '\0');
  auto* dst = reinterpret_cast<unsigned char*>(out.data());
  while (!ciphertext.empty()) {
    const size_t n = std::min(ciphertext.size(), kMaxEvpPiece);
    int out_len = 0;
    Require(EVP_DecryptUpdate(c.ctx, dst, &out_len, Bytes(ciphertext), static_cast<int>(n)) == 1 &&
                static_cast<size_t>(out_len) == n,
            "EVP_DecryptUpdate");
    dst += n;
    ciphertext.remove_prefix(n);
  }
  Require(EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag.data()) == 1, "GCM tag");
  int final_len = 0;
  if (EVP_DecryptFinal_ex(c.ctx, dst, &final_len) != 1) {
    // Never hand out plaintext that failed authentication.
    OPENSSL_cleanse(out.data(), out.size());
    return absl::DataLossError(
        "sealed data failed authentication: it was altered, or sealed with another key or associated data");
  }
  return out;
}

Digest DataKey::Mac(std::string_view data) const {
  Digest d;
  unsigned int len = 0;
  Require(HMAC(EVP_sha256(), mac_key_.data(), static_cast<int>(mac_key_.size()), Bytes(data), data.size(),
               d.bytes.data(), &len) != nullptr &&
              len == d.bytes.size(),
          "HMAC");
  return d;
}

std::string_view DataKey::raw() const {
  return std::string_view(reinterpret_cast<const char*>(key_.data()), key_.size());
}

// ---------------------------------------------------------------------------
// KeyRing

absl::StatusOr<std::unique_ptr<KeyRing>> KeyRing::OpenOrCreate(Env& env, const std::string& dir) {
  const bool existed = env.FileExists(dir);
  if (!existed) RETURN_IF_ERROR(env.CreateDirs(dir));
  // Always 0700 before any key is written: Env creates files with mode 0644
  // and the key file is restricted only after it exists, so nobody else may
  // be able to open it in that moment (and keep the descriptor).
  RETURN_IF_ERROR(Chmod(dir, 0700));
  if (!existed) RETURN_IF_ERROR(env.SyncDir(DirName(dir)));
  auto ring = std::unique_ptr<KeyRing>(new KeyRing(env, dir));
  ASSIGN_OR_RETURN(std::vector<FileInfo> children, env.GetChildren(dir));
  absl::MutexLock lock(&ring->mu_);
  for (const FileInfo& child : children) {
    const int number = ParseKeyFileName(child.name);
    if (number == 0) continue;  // temp files of an interrupted write, strays
    const std::string path = JoinPath(dir, child.name);
    if (number < 0) {
      return absl::FailedPreconditionError(
          fmt::format("unexpected file {}: master keys are named master-NNNNNN.key (six digits, from 000001)", path));
    }
    RETURN_IF_ERROR(CheckPrivate(path));
    ASSIGN_OR_RETURN(std::string contents, env.ReadFileToString(path));
    ASSIGN_OR_RETURN(DataKey key, ParseKeyFile(std::move(contents), path));
    ring->masters_.emplace_back(number, std::move(key));
  }
  std::sort(ring->masters_.begin(), ring->masters_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  if (ring->masters_.empty()) RETURN_IF_ERROR(ring->AddMasterLocked(1));
  return ring;
}

absl::Status KeyRing::AddMasterLocked(int number) {
  if (number > kMaxKeyNumber) {
    return absl::ResourceExhaustedError(fmt::format("no master key numbers left after {}", kMaxKeyNumber));
  }
  const std::string path = JoinPath(dir_, KeyFileName(number));
  if (env_.FileExists(path)) {
    return absl::AlreadyExistsError(fmt::format(
        "master key {} already exists (created by another process?); reopen the key ring", path));
  }
  DataKey key = DataKey::Generate();
  std::string text(2 * kKeySize + 1, '\n');
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < kKeySize; ++i) {
    const auto b = static_cast<uint8_t>(key.raw()[i]);
    text[2 * i] = kHex[b >> 4];
    text[2 * i + 1] = kHex[b & 0xf];
  }
  const std::string tmp = fmt::format("{}.tmp-{}", path, NewRandomHex(8));
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env_.NewWritableFile(tmp));
    // Private before the key bytes go in (the directory is 0700 as well).
    RETURN_IF_ERROR(Chmod(tmp, 0600));
    RETURN_IF_ERROR(file->Append(text));
    RETURN_IF_ERROR(file->Sync());
    RETURN_IF_ERROR(file->Close());
    RETURN_IF_ERROR(env_.RenameFile(tmp, path));
    return env_.SyncDir(dir_);
  }();
  OPENSSL_cleanse(text.data(), text.size());
  if (!status.ok()) {
    if (env_.FileExists(tmp)) env_.DeleteFile(tmp).IgnoreError();
    return Annotate(status, fmt::format("writing master key {}", number));
  }
  masters_.emplace_back(number, std::move(key));
  return absl::OkStatus();
}

absl::StatusOr<std::string> KeyRing::Wrap(const DataKey& key) const {
  absl::MutexLock lock(&mu_);
  const auto& [number, master] = masters_.back();
  const std::string header = WrapHeader(number);
  return header + master.Seal(key.raw(), WrapAad(header));
}

absl::StatusOr<int> KeyRing::WrappedKeyNumber(std::string_view wrapped) {
  if (wrapped.size() != kWrappedSize) {
    return absl::InvalidArgumentError(
        fmt::format("a wrapped key has {} bytes, not {}", kWrappedSize, wrapped.size()));
  }
  if (wrapped.substr(0, kWrapMagic.size()) != kWrapMagic) {
    return absl::InvalidArgumentError("not a wrapped key: bad magic");
  }
  const auto version = static_cast<uint8_t>(wrapped[kWrapMagic.size()]);
  if (version != kWrapVersion) {
    return absl::InvalidArgumentError(fmt::format("unsupported wrapped key version {}", version));
  }
  const uint32_t number = GetUint32Be(wrapped.substr(4, 4));
  if (number < 1 || number > kMaxKeyNumber) {
    return absl::InvalidArgumentError(fmt::format("wrapped key names master key {}, out of range", number));
  }
  return static_cast<int>(number);
}

absl::StatusOr<DataKey> KeyRing::Unwrap(std::string_view wrapped) const {
  absl::StatusOr<int> number = WrappedKeyNumber(wrapped);
  if (!number.ok()) return absl::DataLossError(fmt::format("damaged wrapped key: {}", number.status().message()));
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(masters_.begin(), masters_.end(), [&](const auto& m) { return m.first == *number; });
  if (it == masters_.end()) {
    return absl::NotFoundError(fmt::format("master key {} is not in {} (retired, or keys/ restored from an old backup?)",
                                           KeyFileName(*number), dir_));
  }
  const std::string_view header = wrapped.substr(0, kWrapHeaderSize);
  absl::StatusOr<std::string> raw = it->second.Open(wrapped.substr(kWrapHeaderSize), WrapAad(header));
  if (!raw.ok()) return Annotate(raw.status(), "unwrapping data key");
  absl::StatusOr<DataKey> key = DataKey::FromBytes(*raw);
  OPENSSL_cleanse(raw->data(), raw->size());
  return key;
}

absl::StatusOr<int> KeyRing::Rotate() {
  absl::MutexLock lock(&mu_);
  const int number = masters_.back().first + 1;
  RETURN_IF_ERROR(AddMasterLocked(number));
  return number;
}

absl::Status KeyRing::Retire(int number) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(masters_.begin(), masters_.end(), [&](const auto& m) { return m.first == number; });
  if (it == masters_.end()) return absl::NotFoundError(fmt::format("no master key {} in {}", number, dir_));
  if (number == masters_.back().first) {
    return absl::FailedPreconditionError(
        fmt::format("master key {} is the current key; rotate to a new key before retiring it", number));
  }
  RETURN_IF_ERROR(env_.DeleteFile(JoinPath(dir_, KeyFileName(number))));
  RETURN_IF_ERROR(env_.SyncDir(dir_));
  masters_.erase(it);
  return absl::OkStatus();
}

int KeyRing::current() const {
  absl::MutexLock lock(&mu_);
  return masters_.back().first;
}

std::vector<int> KeyRing::numbers() const {
  absl::MutexLock lock(&mu_);
  std::vector<int> out;
  out.reserve(masters_.size());
  for (const auto& m : masters_) out.push_back(m.first);
  return out;
}

}  // namespace cairn::store
