// Fsck for a LocalObjectStore directory: re-hashes every object and reports,
// per file, everything that does not belong (see the layout in
// store/local_object_store.h). It only reads; repairing is up to the caller
// (e.g. delete corrupt objects and re-upload them).
//
// Problems reported:
//   kCorrupt        an object whose bytes do not hash to its name
//   kBadName        a file or directory whose name is not a shard / digest
//                   (or a directory where an object should be)
//   kMisplaced      a well-named object in the wrong shard directory
//   kStrayTempFile  a file under tmp/ (left by a crash, or a write in progress)
//   kUnreadable     a file or directory that could not be read
//
// Thread-safety: safe to run concurrently with readers; writers may make it
// report their temp files.
//
// Usage:
//   ASSIGN_OR_RETURN(FsckReport report, FsckObjectStore(env, data_dir + "/objects"));
//   for (const FsckProblem& p : report.problems)
//     fmt::print("{} {}: {}\n", FsckProblemKindName(p.kind), p.path, p.detail);
#ifndef CAIRN_STORE_FSCK_H_
#define CAIRN_STORE_FSCK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/env.h"
#include "base/status.h"

namespace cairn::store {

struct FsckProblem {
  enum class Kind { kCorrupt, kMisplaced, kBadName, kStrayTempFile, kUnreadable };
  Kind kind;
  std::string path;    // Full path of the file or directory.
  std::string detail;  // Human-readable explanation.
};

// "corrupt", "misplaced", "bad_name", "stray_temp_file", "unreadable".
std::string_view FsckProblemKindName(FsckProblem::Kind kind);

struct FsckReport {
  uint64_t objects_checked = 0;  // Correctly placed object files hashed.
  uint64_t bytes_checked = 0;
  std::vector<FsckProblem> problems;  // In walk order (sorted by path).
  bool ok() const { return problems.empty(); }
};

// Checks the store at `root`. `progress`, if set, is called with the total
// bytes hashed so far after each chunk read. kNotFound if `root` does not
// exist; problems with individual files are reported, not returned.
absl::StatusOr<FsckReport> FsckObjectStore(Env& env, const std::string& root,
                                           std::function<void(uint64_t done_bytes)> progress = {});

}  // namespace cairn::store

#endif  // CAIRN_STORE_FSCK_H_
