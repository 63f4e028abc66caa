// Cleaning the pipelines' work folder (docs/data-directory.md "work/"):
// materialised inputs, code snapshots and job folders are caches and
// scratch, rebuilt on demand, so `cairn gc` removes the ones no active run
// uses and nobody touched within the grace period. Step logs survive as run
// artifacts; committed outputs are datasets.
//
// Thread-safety: a free function; safe beside running schedulers (folders of
// active runs are kept, and a folder a step is materialising is a temp folder
// younger than any grace period gc accepts).
#ifndef CAIRN_PIPELINE_WORK_DIR_GC_H_
#define CAIRN_PIPELINE_WORK_DIR_GC_H_

#include <cstdint>
#include <string>

#include "base/status.h"
#include "pipeline/pipeline_store.h"

namespace cairn::pipeline {

struct WorkDirReport {
  uint64_t removed_dirs = 0;
  uint64_t freed_bytes = 0;
  uint64_t kept_in_use = 0;  // folders an active run uses
  uint64_t kept_young = 0;   // folders used within the grace period
};

// Removes (or with `dry_run` only counts) what is described above. `now_ms`
// and `grace_ms` in ms since the epoch / ms.
absl::StatusOr<WorkDirReport> CleanWorkDir(PipelineStore& store, const std::string& work_dir, int64_t now_ms,
                                           int64_t grace_ms, bool dry_run);

// Marks a cached folder as used now (its mtime), so that gc keeps it.
void TouchWorkDir(const std::string& path);

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_WORK_DIR_GC_H_
