// DatasetManifest: the content of one dataset commit — every file's path,
// size, mode and ordered chunks — in a canonical text form whose SHA-256 is
// the manifest's name in the object store. Two trees with the same content
// have byte-identical manifests. Format: docs/data-manifest.md.
//
// Every manifest read from outside is fully validated (paths, sizes, digests,
// order), so a damaged or hostile manifest is an error, never a crash or a
// path that escapes a checkout directory.
//
// Thread-safety: plain values and stateless functions.
//
// Usage:
//   DatasetManifest m;
//   m.files.push_back({.path = "train/a.csv", .size = 10, .mode = 0644, .chunks = {{digest, 10}}});
//   RETURN_IF_ERROR(m.Normalize());              // sorts, rejects duplicates and bad paths
//   std::string text = m.Serialize();
//   ASSIGN_OR_RETURN(DatasetManifest back, DatasetManifest::Parse(text));
#ifndef CAIRN_DATA_MANIFEST_H_
#define CAIRN_DATA_MANIFEST_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/sha256.h"
#include "base/status.h"

namespace cairn::data {

struct ChunkRef {
  Digest digest;
  uint64_t size = 0;
};

struct ManifestFile {
  std::string path;  // relative, '/'-separated, see ValidateDatasetPath
  uint64_t size = 0;
  uint32_t mode = 0644;  // permission bits only (0 to 07777)
  std::vector<ChunkRef> chunks;  // sizes add up to `size`; empty for an empty file
};

// Rejects (kInvalidArgument, naming the path and the reason) anything that
// could escape or confuse a checkout: empty or absolute paths, "." or ".."
// segments, empty segments ("a//b", trailing "/"), NUL or other control
// bytes, backslashes, invalid UTF-8, and paths over 4096 bytes.
absl::Status ValidateDatasetPath(std::string_view path);

struct DatasetManifest {
  std::vector<ManifestFile> files;  // sorted by path (bytewise), unique

  // Sorts by path and validates every entry; kInvalidArgument on a bad
  // path, a duplicate path, chunk sizes that do not add up, or a bad mode.
  absl::Status Normalize();
  // The canonical text. REQUIRES: Normalize() succeeded.
  std::string Serialize() const;
  // The manifest's name: SHA-256 of Serialize().
  Digest ComputeDigest() const;
  // Parses and validates canonical text; anything else is kInvalidArgument
  // with the line number.
  static absl::StatusOr<DatasetManifest> Parse(std::string_view text);

  uint64_t TotalBytes() const;
};

}  // namespace cairn::data

#endif  // CAIRN_DATA_MANIFEST_H_
