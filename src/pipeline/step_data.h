// Moving dataset commits in and out of pipeline steps: an input is a
// dataset commit (or one split of it) materialised once into a read-only
// folder that every step reading it mounts; an output folder a step wrote is
// committed as a new commit of its output dataset.
//
// Thread-safety: free functions; MaterializeCommit may run concurrently for
// the same destination (the first rename wins, the others find it done).
#ifndef CAIRN_PIPELINE_STEP_DATA_H_
#define CAIRN_PIPELINE_STEP_DATA_H_

#include <string>
#include <vector>

#include "base/status.h"
#include "data/chunk_store.h"
#include "data/dataset_store.h"

namespace cairn::pipeline {

// Which files of a commit a step may see.
struct FileSelection {
  std::string split;           // only this split's files; "" = every file
  bool exclude_sealed = true;  // leave out every sealed split's files (all but `evaluate` steps)
};

// The files of `commit` that `selection` keeps (paths in manifest order).
absl::StatusOr<std::vector<data::ManifestFile>> SelectFiles(data::DatasetStore& datasets, const data::Dataset& ds,
                                                            const data::DatasetCommit& commit,
                                                            const FileSelection& selection);

// Writes the selected files of `commit` under `dest` (every chunk verified),
// unless `dest` exists already: it is built in a sibling temp folder and
// renamed, so it is whole or absent. Files and folders are left read-only.
absl::Status MaterializeCommit(data::DatasetStore& datasets, const data::Dataset& ds,
                               const data::DatasetCommit& commit, const FileSelection& selection,
                               const std::string& dest);

// Commits every file under `dir` (replacing the branch's content) to
// `branch` of `ds`. Returns the commit (the head itself when nothing changed).
absl::StatusOr<data::DatasetCommit> CommitDirectory(data::DatasetStore& datasets, data::ChunkStore& chunks,
                                                    const data::Dataset& ds, const std::string& dir,
                                                    const std::string& branch, const std::string& message,
                                                    const std::string& author);

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_STEP_DATA_H_
