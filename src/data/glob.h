// Glob patterns over dataset paths: `cairn data add --include/--exclude`
// and split declarations (`--split test=test/**`) select files with them.
//
// A pattern always matches the WHOLE '/'-separated dataset path, never a
// suffix or a basename: `*.csv` matches "a.csv" but not "dir/a.csv" (write
// `**/*.csv` for that). This keeps a pattern's meaning independent of where
// a file sits. Syntax, segment by segment (segments are split at '/'):
//
//   *        any run of characters within one segment (including none and
//            including a leading '.'; there are no hidden files here)
//   ?        exactly one character (one UTF-8 code point) within a segment
//   [abc]    one character from the set; ranges `[a-z]`, negation `[!a-z]`;
//            `]` first in the set and `-` first or last are literal
//   \c       the character c literally (dataset paths contain no '\', so
//            it is free to serve as the escape: `\*`, `\[`, `\?`)
//   **       as a whole segment: zero or more segments (`a/**/b` matches
//            "a/b" and "a/x/y/b"; `**/x` matches "x" and "d/x"). A trailing
//            `/**` matches everything under the directory but not a file of
//            that name: `dir/**` matches "dir/a" and "dir/a/b", not "dir".
//            `**` alone matches every path. `**` inside a segment (`a**`)
//            is just two `*`.
//
// A valid pattern is non-empty, relative (no leading '/'), has no empty
// segment ("a//b", trailing '/': write `dir/**`), no "." or ".." segment,
// every '[' closed within its segment, no reversed range and no trailing
// lone '\'. ValidateGlob checks this once, up front; MatchGlob assumes it.
//
// Matching runs in O(len(pattern) * len(path)) time without allocating:
// both `*` and `**` are matched by greedy backtracking to the most recent
// star only, which is exact because every other element consumes exactly
// one unit (character or segment).
//
// Thread-safety: stateless functions; call from any thread.
//
// Usage:
//   RETURN_IF_ERROR(ValidateGlob(flag_value));          // kInvalidArgument
//   if (MatchGlob("train/**/*.png", "train/cats/1.png")) ...
#ifndef CAIRN_DATA_GLOB_H_
#define CAIRN_DATA_GLOB_H_

#include <string_view>

#include "base/status.h"

namespace cairn::data {

// OK if `pattern` is well formed (see above); kInvalidArgument naming the
// pattern and what is wrong otherwise.
absl::Status ValidateGlob(std::string_view pattern);

// True if `pattern` matches the whole of `path`. REQUIRES: ValidateGlob
// (pattern) is OK; a malformed pattern never crashes but its result is
// unspecified.
bool MatchGlob(std::string_view pattern, std::string_view path);

}  // namespace cairn::data

#endif  // CAIRN_DATA_GLOB_H_
