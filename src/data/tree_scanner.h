// ScanTree: lists the files that `cairn data add NAME PATH...` will put into
// a dataset, with the stat data the stat cache (data/stat_cache.h) needs to
// recognise files it has already hashed. It reads directories only; no file
// content is read here.
//
// Semantics of the PATH arguments:
//   - A directory argument adds its CONTENTS (like rsync's "dir/"): file
//     dir/a/b.csv becomes dataset path "a/b.csv".
//   - A file argument adds that file under the argument's basename.
//     If the argument itself is a symlink it is followed wherever it points:
//     the user named it explicitly.
//   - `prefix`, if set, is prepended to every dataset path ("train" turns
//     "a.csv" into "train/a.csv"; one trailing '/' is ignored).
//   - Include globs (if any) keep only dataset paths matching one of them;
//     exclude globs drop matching ones; exclude wins. Globs (data/glob.h)
//     match the whole dataset path, prefix included. Excluded entries are
//     dropped before any check below, so `--exclude` can leave out a socket
//     or a badly named file. A directory whose every descendant an exclude
//     of the form `P/**` covers is not even opened.
//   - The result is sorted bytewise by dataset path; two arguments yielding
//     the same dataset path (or one yielding "a" and another "a/b") are
//     kInvalidArgument naming both disk paths.
//
// Rules (anything not listed here is an error, never skipped silently):
//   - Regular files are added; directories are descended into. Empty
//     directories add nothing (a manifest holds files only).
//   - A symlink inside a directory argument is followed if it resolves to a
//     regular file inside that argument's tree: the target's content and
//     stat data are added under the link's own path. A symlink resolving
//     outside the tree, a dangling one or one to a directory is
//     kInvalidArgument naming the link and its target.
//   - FIFOs, sockets and device files are kInvalidArgument naming them.
//   - A name whose dataset path fails ValidateDatasetPath (control
//     characters, backslashes, invalid UTF-8, over 4096 bytes) is
//     kInvalidArgument with the reason.
//   - A nonexistent argument is kNotFound; an unreadable directory is
//     kPermissionDenied; both name the path. A malformed glob or prefix is
//     kInvalidArgument.
//   - When several problems exist, the one at the smallest dataset path is
//     reported, so the error does not depend on thread timing.
// Files that change while being scanned are reported as stat saw them; the
// stat cache and the hashing pipeline notice later changes.
//
// Speed: directories are read with openat/fdopendir/readdir, using d_type
// so that directories are never stat'ed, and files are fstatat'ed relative
// to their directory's fd. Big trees are scanned by two threads.
//
// Thread-safety: ScanTree is reentrant; it shares no state between calls.
//
// Usage:
//   ScanOptions opts{.include = {"**/*.png"}, .exclude = {"tmp/**"}, .prefix = "train"};
//   ASSIGN_OR_RETURN(std::vector<ScannedFile> files, ScanTree({"./images"}, opts));
//   for (const ScannedFile& f : files) {
//     if (const auto chunks = cache.Lookup(f)) ... else ReadAndChunk(f.disk_path);
//   }
#ifndef CAIRN_DATA_TREE_SCANNER_H_
#define CAIRN_DATA_TREE_SCANNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace cairn::data {

struct ScanOptions {
  std::vector<std::string> include;  // globs; empty = everything
  std::vector<std::string> exclude;  // globs
  std::string prefix;                // dataset directory to put everything under; "" = the root
};

struct ScannedFile {
  std::string path;       // dataset path ('/'-separated, relative, prefix applied); passes ValidateDatasetPath
  std::string disk_path;  // absolute path to read the content from (the link's path for a followed symlink)
  uint64_t size = 0;
  uint32_t mode = 0;  // permission bits (st_mode & 07777)
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;
};

// Lists the files named by `args` (see the header comment for the rules).
// On error nothing is returned.
absl::StatusOr<std::vector<ScannedFile>> ScanTree(const std::vector<std::string>& args, const ScanOptions& options);

}  // namespace cairn::data

#endif  // CAIRN_DATA_TREE_SCANNER_H_
