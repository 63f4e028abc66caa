// Code snapshots: the content-addressed list of a project folder's source
// files that a pipeline run executes, so that every tracked run names the
// exact code it ran (and the run cache can tell unchanged code), and so that
// each pipeline run gets an immutable copy that later edits cannot change.
//
// Which files (both modes skip any `.git`, `cairn-data` (the default data
// directory) and `__pycache__` directory, at any depth):
//   - In a git work tree: what `git ls-files --cached --others
//     --exclude-standard` lists below the folder (tracked files plus
//     untracked ones that are not ignored), with HEAD's commit and a digest
//     of the uncommitted changes (`git status --porcelain=v1`: each changed
//     path with its status letters and current content digest). Tracked
//     files deleted from the work tree are left out; submodules (gitlinks)
//     are not descended into. Git runs with --no-optional-locks (a snapshot
//     never writes the index) and without the caller's GIT_* variables. A
//     repository git refuses to read (e.g. "dubious ownership") is walked
//     as a plain folder.
//   - Otherwise: the folder is walked and `.gitignore` files are honoured
//     (each applies below its own directory; blank lines and `#` comments
//     skipped; `!negation`; `dir/` matches directories only; a pattern with a
//     leading or inner `/` is anchored to its .gitignore's directory,
//     otherwise it matches a name at any depth; `*`, `?`, `[a-z]`, `**/x`,
//     `x/**`, `a/**/b`, `\` escapes; the last matching rule wins and an
//     ignored directory is not entered, so its files cannot be re-included).
// Regular files are recorded with mode 0100644 or 0100755 (executable if any
// x bit is set: git's two modes, so umask differences do not change the
// digest); symlinks as links (mode 0120000, "content" = the link target),
// never followed; sockets, FIFOs and devices are skipped.
//
// digest = SHA-256 over "cairn-code-1\n" then, per file in bytewise path
// order, PATH \0 MODE(octal) \0 SHA256-HEX \n. It depends on paths, modes and
// contents only: the same tree has the same digest in or out of git.
//
// Limits: a folder holding more than 20,000 files or 256 MiB is refused
// (kFailedPrecondition naming the biggest top-level entries and files)
// before any file is read: code snapshots are for code; data belongs in
// datasets (`cairn data add`) and in .gitignore.
//
// Speed: git lists the files (no stat of ignored trees); each file is opened
// once (fstat + read + hash). A 100-file project takes a few milliseconds
// plus three git processes.
//
// Thread-safety: reentrant functions, no shared state.
//
// Usage:
//   ASSIGN_OR_RETURN(CodeSnapshot snap, SnapshotCode("/srv/project"));
//   RETURN_IF_ERROR(MaterializeSnapshot(snap, "/srv/project", work + "/code/" + snap.digest));
#ifndef CAIRN_PIPELINE_CODE_SNAPSHOT_H_
#define CAIRN_PIPELINE_CODE_SNAPSHOT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace cairn::pipeline {

inline constexpr uint32_t kRegularFileMode = 0100644;
inline constexpr uint32_t kExecutableFileMode = 0100755;
inline constexpr uint32_t kSymlinkMode = 0120000;

struct SnapshotFile {
  std::string path;    // relative to the project folder, '/'-separated
  uint32_t mode = 0;   // kRegularFileMode, kExecutableFileMode or kSymlinkMode
  uint64_t size = 0;   // bytes of content (a link: of its target)
  std::string sha256;  // hex SHA-256 of the content (a link: of its target)
};

struct CodeSnapshot {
  std::string digest;            // SHA-256 hex over the canonical file list (see above)
  std::string git_commit;        // HEAD commit when the folder is in a git work tree, else ""
  std::string git_dirty_digest;  // SHA-256 hex of uncommitted changes below the folder; "" when clean or not git
  std::vector<SnapshotFile> files;  // sorted bytewise by path
  uint64_t total_bytes = 0;
};

struct SnapshotLimits {
  uint64_t max_files = 20000;
  uint64_t max_bytes = 256ull << 20;
};

// Lists and hashes the files of `project_dir` (see the header comment).
// Errors: kNotFound (no such directory), kInvalidArgument (not a directory),
// kFailedPrecondition (over the limits), kPermissionDenied / kInternal
// naming a file that cannot be read.
absl::StatusOr<CodeSnapshot> SnapshotCode(const std::string& project_dir);
absl::StatusOr<CodeSnapshot> SnapshotCode(const std::string& project_dir, const SnapshotLimits& limits);

// Copies the snapshot's files from `project_dir` into `dest` (which must not
// exist; its parent is created), verifying each file's digest as it is
// copied: a file changed, replaced or deleted since the snapshot was taken is
// kFailedPrecondition naming it, and nothing is left at `dest`. Files are
// written 0644 or 0755, directories 0755, links as links. The copy is built
// in a temporary sibling and renamed into place, so `dest` appears complete
// or not at all. A snapshot whose paths are not clean relative paths (empty,
// absolute, "." or ".." segments) or that lists a path below another listed
// file or link is kInvalidArgument: nothing is ever written outside `dest`.
// kAlreadyExists when `dest` exists. Contents are not fsync'ed: a copy lost to
// a crash is made again by the next run.
absl::Status MaterializeSnapshot(const CodeSnapshot& snap, const std::string& project_dir, const std::string& dest);

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_CODE_SNAPSHOT_H_
