// SHA-256 digests (OpenSSL): the names of every object in Cairn.
//
// Thread-safety: Digest is a value type. A Sha256 hasher is not thread-safe.
//
// Usage:
//   Sha256 h;
//   h.Update("hello ");
//   h.Update("world");
//   Digest d = h.Finish();
//   std::string hex = d.ToHex();   // 64 lowercase hex characters
#ifndef CAIRN_BASE_SHA256_H_
#define CAIRN_BASE_SHA256_H_

#include <array>
#include <compare>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace cairn {

struct Digest {
  std::array<uint8_t, 32> bytes{};

  std::string ToHex() const;
  // Accepts exactly 64 hex characters (either case); kInvalidArgument otherwise.
  static absl::StatusOr<Digest> FromHex(std::string_view hex);
  static bool IsValidHex(std::string_view hex);

  auto operator<=>(const Digest&) const = default;
  bool operator==(const Digest&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine_contiguous(std::move(h), d.bytes.data(), d.bytes.size());
  }
};

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // Returns the digest; the hasher is reset and may be reused.
  Digest Finish();

  static Digest Of(std::string_view data);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cairn

#endif  // CAIRN_BASE_SHA256_H_
