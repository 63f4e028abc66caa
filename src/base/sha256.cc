#include "base/sha256.h"

#include <openssl/evp.h>

#include <cassert>
#include <cstdlib>

#include <fmt/format.h>

namespace cairn {
namespace {

// Fetched once: OpenSSL 3 otherwise looks the algorithm up on every init,
// which costs more than hashing a short string. The EVP_MD is immutable.
const EVP_MD* Sha256Md() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

struct Sha256::State {
  EVP_MD_CTX* ctx = nullptr;
};

std::string Digest::ToHex() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(64, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return out;
}

bool Digest::IsValidHex(std::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (HexValue(c) < 0) return false;
  }
  return true;
}

absl::StatusOr<Digest> Digest::FromHex(std::string_view hex) {
  if (!IsValidHex(hex)) {
    // Bound the echoed input: it may be arbitrary user data.
    std::string shown(hex.substr(0, 80));
    return absl::InvalidArgumentError(
        fmt::format("invalid SHA-256 digest '{}{}': expected 64 hex characters", shown, hex.size() > 80 ? "..." : ""));
  }
  Digest d;
  for (size_t i = 0; i < d.bytes.size(); ++i) {
    d.bytes[i] = static_cast<uint8_t>(HexValue(hex[2 * i]) << 4 | HexValue(hex[2 * i + 1]));
  }
  return d;
}

Sha256::Sha256() : state_(std::make_unique<State>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, Sha256Md(), nullptr) != 1) {
    std::abort();  // Out of memory or a broken OpenSSL: nothing sensible to do.
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(state_->ctx); }

void Sha256::Update(std::string_view data) {
  if (data.empty()) return;
  int ok = EVP_DigestUpdate(state_->ctx, data.data(), data.size());
  assert(ok == 1);
  (void)ok;
}

Digest Sha256::Finish() {
  Digest d;
  unsigned int len = 0;
  int ok = EVP_DigestFinal_ex(state_->ctx, d.bytes.data(), &len);
  assert(ok == 1 && len == d.bytes.size());
  ok = EVP_DigestInit_ex(state_->ctx, Sha256Md(), nullptr);
  assert(ok == 1);
  (void)ok;
  return d;
}

Digest Sha256::Of(std::string_view data) {
  Digest d;
  unsigned int len = 0;
  int ok = EVP_Digest(data.data(), data.size(), d.bytes.data(), &len, Sha256Md(), nullptr);
  assert(ok == 1 && len == d.bytes.size());
  (void)ok;
  return d;
}

}  // namespace cairn
