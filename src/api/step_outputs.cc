#include "api/step_outputs.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "pipeline/step_data.h"

namespace cairn::api {
namespace {

namespace fs = std::filesystem;

constexpr char kArtifactScheme[] = "mlflow-artifacts:/";

}  // namespace

absl::Status PublishStepOutput(DataDirectory& dir, const std::string& run_id, const std::string& output) {
  if (output.empty() || output.find('/') != std::string::npos || output == "." || output == "..") {
    return absl::OkStatus();  // not an output name: the caller resolves the path as an artifact path
  }
  ASSIGN_OR_RETURN(tracking::Run run, dir.tracking().GetRun(run_id));
  std::string commit_id;
  for (const tracking::Tag& t : run.tags) {
    if (t.key == "cairn.output." + output) commit_id = t.value;
  }
  if (commit_id.empty()) return absl::OkStatus();
  const std::string& uri = run.info.artifact_uri;
  if (uri.rfind(kArtifactScheme, 0) != 0) return absl::OkStatus();  // artifacts stored elsewhere
  std::string folder = uri.substr(sizeof(kArtifactScheme) - 1);
  while (!folder.empty() && folder.front() == '/') folder.erase(0, 1);
  folder += "/" + output;
  ASSIGN_OR_RETURN(auto existing, dir.tracking().ListArtifacts(folder));
  if (!existing.empty()) return absl::OkStatus();

  ASSIGN_OR_RETURN(data::DatasetCommit commit, dir.datasets().GetCommit(commit_id));
  ASSIGN_OR_RETURN(data::Dataset ds, dir.datasets().GetDatasetById(commit.dataset_id));
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = fmt::format("{}/tmp/publish-{}-{}", dir.work_path(), getpid(), counter.fetch_add(1));
  std::error_code ec;
  fs::create_directories(dir.work_path() + "/tmp", ec);
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code ignored;
      // MaterializeCommit leaves files read-only: make them removable first.
      for (auto it = fs::recursive_directory_iterator(path, ignored); it != fs::recursive_directory_iterator();
           it.increment(ignored)) {
        fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ignored);
      }
      fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ignored);
      fs::remove_all(path, ignored);
    }
  } cleanup{tmp};
  RETURN_IF_ERROR(pipeline::MaterializeCommit(dir.datasets(), ds, commit, {.split = "", .exclude_sealed = false}, tmp));
  for (auto it = fs::recursive_directory_iterator(tmp, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string rel = fs::relative(it->path(), tmp).generic_string();
    ASSIGN_OR_RETURN(auto writer, dir.objects().NewWriter());
    std::ifstream in(it->path(), std::ios::binary);
    std::string buffer(1 << 16, '\0');
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      if (in.gcount() > 0) RETURN_IF_ERROR(writer->Append(std::string_view(buffer.data(), in.gcount())));
    }
    if (in.bad()) return absl::DataLossError(fmt::format("cannot read {}", it->path().string()));
    ASSIGN_OR_RETURN(store::ObjectInfo info, writer->Commit());
    RETURN_IF_ERROR(dir.tracking().PutArtifact(folder + "/" + rel,
                                               {info.digest.ToHex(), static_cast<int64_t>(info.size)}));
  }
  if (ec) return absl::InternalError(fmt::format("cannot list {}: {}", tmp, ec.message()));
  return absl::OkStatus();
}

}  // namespace cairn::api
