#include "base/ids.h"

#include <openssl/rand.h>

#include <cstdint>
#include <random>
#include <vector>

namespace cairn {
namespace {

void RandomBytes(uint8_t* out, size_t n) {
  if (n == 0) return;
  if (RAND_bytes(out, static_cast<int>(n)) == 1) return;
  std::random_device rd;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(rd());
}

std::string Hex(const uint8_t* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 0xf];
  }
  return out;
}

}  // namespace

std::string NewRunId() {
  uint8_t b[16];
  RandomBytes(b, sizeof b);
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // Version 4.
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant.
  return Hex(b, sizeof b);
}

bool IsValidRunId(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string NewRandomHex(int bytes) {
  if (bytes <= 0) return "";
  std::vector<uint8_t> b(static_cast<size_t>(bytes));
  RandomBytes(b.data(), b.size());
  return Hex(b.data(), b.size());
}

}  // namespace cairn
