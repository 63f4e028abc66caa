// Digests as 32-byte SQL blobs, the form the data module's tables store
// them in (chunk keys, objects, manifests).
//
// Thread-safety: stateless functions.
#ifndef CAIRN_DATA_INTERNAL_DIGEST_BLOB_H_
#define CAIRN_DATA_INTERNAL_DIGEST_BLOB_H_

#include <algorithm>
#include <optional>
#include <string_view>

#include "base/sha256.h"

namespace cairn::data::internal {

// A view of the digest's 32 bytes (valid while `d` lives).
inline std::string_view DigestBlob(const Digest& d) {
  return std::string_view(reinterpret_cast<const char*>(d.bytes.data()), d.bytes.size());
}

// nullopt unless `blob` is exactly 32 bytes (a damaged row).
inline std::optional<Digest> DigestFromBlob(std::string_view blob) {
  if (blob.size() != 32) return std::nullopt;
  Digest d;
  std::copy(blob.begin(), blob.end(), d.bytes.begin());
  return d;
}

}  // namespace cairn::data::internal

#endif  // CAIRN_DATA_INTERNAL_DIGEST_BLOB_H_
