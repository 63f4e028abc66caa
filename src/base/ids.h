// Random identifiers: run ids (MLflow style: uuid4 as 32 lowercase hex
// characters) and random hex tokens for temp-file names and the like.
//
// Randomness comes from OpenSSL's RAND_bytes (a CSPRNG), falling back to
// std::random_device if it ever fails.
//
// Thread-safety: thread-safe.
//
// Usage:
//   std::string run_id = NewRunId();        // "3f2b...": 32 hex chars
//   if (!IsValidRunId(id)) return absl::InvalidArgumentError(...);
//   std::string tmp = "x.tmp-" + NewRandomHex(8);  // 16 hex chars
#ifndef CAIRN_BASE_IDS_H_
#define CAIRN_BASE_IDS_H_

#include <string>
#include <string_view>

namespace cairn {

// A random (version 4) UUID as 32 lowercase hex characters, no dashes.
std::string NewRunId();

// True for exactly 32 lowercase hex characters (the form NewRunId makes).
bool IsValidRunId(std::string_view id);

// `bytes` random bytes as 2 * bytes lowercase hex characters (REQUIRES: bytes >= 0).
std::string NewRandomHex(int bytes);

}  // namespace cairn

#endif  // CAIRN_BASE_IDS_H_
