#include "pipeline/step_data.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "base/ids.h"
#include "data/glob.h"
#include "data/ingest.h"
#include "data/tree_scanner.h"
#include "pipeline/work_dir_gc.h"

namespace cairn::pipeline {
namespace {

bool InSplit(const data::Split& split, const std::string& path) {
  return std::any_of(split.globs.begin(), split.globs.end(),
                     [&](const std::string& g) { return data::MatchGlob(g, path); });
}

// Read-only for everyone but still traversable: the folder is shared by
// every step that reads this input, and a step runs as another user.
void MakeReadOnly(const std::filesystem::path& root) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const bool dir = it->is_directory(ec);
    ::chmod(it->path().c_str(), dir ? 0555 : 0444);
  }
  ::chmod(root.c_str(), 0555);
}

}  // namespace

absl::StatusOr<std::vector<data::ManifestFile>> SelectFiles(data::DatasetStore& datasets, const data::Dataset& ds,
                                                            const data::DatasetCommit& commit,
                                                            const FileSelection& selection) {
  const data::Split* wanted = nullptr;
  if (!selection.split.empty()) {
    wanted = commit.FindSplit(selection.split);
    if (wanted == nullptr) {
      return absl::NotFoundError(fmt::format("dataset '{}' commit {} has no split '{}'", ds.name,
                                             commit.id.substr(0, 12), selection.split));
    }
  }
  ASSIGN_OR_RETURN(data::DatasetManifest m, datasets.GetManifest(ds, commit.manifest));
  std::vector<data::ManifestFile> out;
  for (data::ManifestFile& f : m.files) {
    if (wanted != nullptr && !InSplit(*wanted, f.path)) continue;
    if (selection.exclude_sealed) {
      bool sealed = false;
      for (const data::Split& s : commit.splits) {
        if (s.sealed && InSplit(s, f.path)) sealed = true;
      }
      if (sealed) continue;
    }
    out.push_back(std::move(f));
  }
  return out;
}

absl::Status MaterializeCommit(data::DatasetStore& datasets, const data::Dataset& ds,
                               const data::DatasetCommit& commit, const FileSelection& selection,
                               const std::string& dest) {
  std::error_code ec;
  if (std::filesystem::exists(dest, ec)) {
    TouchWorkDir(dest);  // in use: `cairn gc` keeps it
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<data::ManifestFile> files, SelectFiles(datasets, ds, commit, selection));
  const std::string tmp = dest + ".tmp-" + NewRandomHex(8);
  std::filesystem::create_directories(tmp, ec);
  if (ec) return absl::PermissionDeniedError(fmt::format("cannot create {}: {}", tmp, ec.message()));
  auto fail = [&](absl::Status s) {
    std::error_code ignored;
    std::filesystem::permissions(tmp, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ignored);
    std::filesystem::remove_all(tmp, ignored);
    return s;
  };
  for (const data::ManifestFile& f : files) {
    const std::string out = tmp + "/" + f.path;  // manifest paths are validated: relative, no ".."
    std::filesystem::create_directories(std::filesystem::path(out).parent_path(), ec);
    if (ec) return fail(absl::PermissionDeniedError(fmt::format("cannot create the folder of {}", out)));
    std::FILE* fp = std::fopen(out.c_str(), "wb");
    if (fp == nullptr) return fail(absl::PermissionDeniedError(fmt::format("cannot write {}", out)));
    absl::Status s = datasets.ReadFile(ds, f, 0, f.size, [&](std::string_view b) -> absl::Status {
      if (std::fwrite(b.data(), 1, b.size(), fp) != b.size()) {
        return absl::ResourceExhaustedError(fmt::format("writing {} failed", out));
      }
      return absl::OkStatus();
    });
    if (std::fclose(fp) != 0 && s.ok()) s = absl::ResourceExhaustedError(fmt::format("writing {} failed", out));
    if (!s.ok()) return fail(s);
  }
  MakeReadOnly(tmp);
  std::filesystem::rename(tmp, dest, ec);
  if (ec) {
    // Another step materialised it first: theirs is as good as ours.
    if (std::filesystem::exists(dest)) return fail(absl::OkStatus());
    return fail(absl::PermissionDeniedError(fmt::format("cannot rename {} to {}: {}", tmp, dest, ec.message())));
  }
  return absl::OkStatus();
}

absl::StatusOr<data::DatasetCommit> CommitDirectory(data::DatasetStore& datasets, data::ChunkStore& chunks,
                                                    const data::Dataset& ds, const std::string& dir,
                                                    const std::string& branch, const std::string& message,
                                                    const std::string& author) {
  ASSIGN_OR_RETURN(std::vector<data::ScannedFile> scanned, data::ScanTree({dir}, data::ScanOptions{}));
  ASSIGN_OR_RETURN(data::ChunkScope scope, datasets.ScopeOf(ds));
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(auto batch, chunks.NewBatch(scope, /*verify=*/false));
    data::ChunkStoreSink sink(*batch);
    ASSIGN_OR_RETURN(std::vector<data::ManifestFile> files,
                     data::IngestFiles(scanned, sink, data::IngestOptions{.threads = 1}));  // flushes the sink
    data::DatasetManifest m;
    m.files = std::move(files);
    RETURN_IF_ERROR(m.Normalize());
    ASSIGN_OR_RETURN(std::optional<data::DatasetCommit> head, datasets.Head(ds, branch));
    ASSIGN_OR_RETURN(Digest md, datasets.PutManifest(ds, m));
    if (head && head->manifest == md) return *head;
    absl::StatusOr<data::CommitResult> r = datasets.Commit(ds, {.branch = branch,
                                                                .expected_head = head ? head->id : "",
                                                                .manifest = md,
                                                                .message = message,
                                                                .author = author,
                                                                .manifest_hint = &m});
    if (r.ok()) return r->commit;
    if (!absl::IsAborted(r.status()) || attempt >= 3) return r.status();
  }
}

}  // namespace cairn::pipeline
