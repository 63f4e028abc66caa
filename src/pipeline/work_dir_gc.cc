#include "pipeline/work_dir_gc.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>
#include <system_error>

namespace cairn::pipeline {
namespace {

namespace fs = std::filesystem;

int64_t MtimeMs(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// Sizes every file and makes every folder writable (inputs and snapshots are
// read-only on purpose), so that remove_all works for a non-root owner too.
uint64_t Prepare(const fs::path& root, bool dry_run) {
  uint64_t bytes = 0;
  std::error_code ec;
  if (!dry_run) ::chmod(root.c_str(), 0755);
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code e2;
    if (it->is_directory(e2) && !it->is_symlink(e2)) {
      if (!dry_run) ::chmod(it->path().c_str(), 0755);
    } else if (it->is_regular_file(e2)) {
      bytes += it->file_size(e2);
    }
  }
  return bytes;
}

}  // namespace

void TouchWorkDir(const std::string& path) { ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0); }

absl::StatusOr<WorkDirReport> CleanWorkDir(PipelineStore& store, const std::string& work_dir, int64_t now_ms,
                                           int64_t grace_ms, bool dry_run) {
  WorkDirReport report;
  std::error_code ec;
  if (!fs::is_directory(work_dir, ec)) return report;
  // What active runs use: their job folders, code snapshots, input commits.
  std::set<std::string> active_runs, active_code, active_commits;
  ASSIGN_OR_RETURN(std::vector<PipelineRunRecord> active, store.ActiveRuns());
  for (const PipelineRunRecord& r : active) {
    active_runs.insert(r.id);
    if (!r.code_digest.empty()) active_code.insert(r.code_digest);
    for (const StepRecord& s : r.steps) {
      for (const auto& [name, in] : s.inputs.items()) {
        if (in.is_object() && in.contains("commit") && in["commit"].is_string()) {
          active_commits.insert(in["commit"].get<std::string>());
        }
      }
      for (const auto& [name, commit] : s.outputs.items()) {
        if (commit.is_string()) active_commits.insert(commit.get<std::string>());
      }
    }
  }
  // An active run may not have recorded its inputs yet: keep every input
  // folder young enough, whatever it is (the grace period covers that).
  auto sweep = [&](const std::string& sub, const std::function<bool(const std::string&)>& in_use) {
    const fs::path dir = fs::path(work_dir) / sub;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (in_use(name)) {
        ++report.kept_in_use;
        continue;
      }
      if (now_ms - MtimeMs(it->path()) < grace_ms) {
        ++report.kept_young;
        continue;
      }
      report.freed_bytes += Prepare(it->path(), dry_run);
      ++report.removed_dirs;
      if (!dry_run) {
        std::error_code rm;
        fs::remove_all(it->path(), rm);
      }
    }
    ec.clear();
  };
  sweep("jobs", [&](const std::string& name) { return active_runs.contains(name); });
  sweep("code", [&](const std::string& name) { return active_code.contains(name.substr(0, 64)); });
  sweep("inputs", [&](const std::string& name) { return active_commits.contains(name.substr(0, 64)); });
  return report;
}

}  // namespace cairn::pipeline
