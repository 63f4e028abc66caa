#include "api/data_directory.h"

#include <filesystem>

#include "api/pipeline_api.h"
#include "data/profile.h"
#include "db/sqlite_database.h"
#include "store/local_object_store.h"

namespace cairn::api {

DataDirectory::DataDirectory(Env& env, std::string path)
    : env_(env),
      path_(std::move(path)),
      absolute_path_(std::filesystem::absolute(path_).lexically_normal().string()) {
  while (absolute_path_.size() > 1 && absolute_path_.back() == '/') absolute_path_.pop_back();
}

DataDirectory::~DataDirectory() {
  absl::MutexLock l(&pipelines_mu_);
  pipelines_.reset();  // its threads use every store below
}

absl::StatusOr<PipelineService*> DataDirectory::pipelines(const PipelineServiceOptions& options) {
  absl::MutexLock l(&pipelines_mu_);
  if (!pipelines_) {
    ASSIGN_OR_RETURN(pipelines_, PipelineService::Create(*this, options));
  }
  return pipelines_.get();
}

absl::StatusOr<PipelineService*> DataDirectory::pipelines() { return pipelines(PipelineServiceOptions{}); }

absl::StatusOr<std::unique_ptr<DataDirectory>> DataDirectory::Open(Env& env, const std::string& path, Role role) {
  auto dir = std::unique_ptr<DataDirectory>(new DataDirectory(env, path));
  RETURN_IF_ERROR(Annotate(env.CreateDirs(path), "cannot create data directory " + path));
  RETURN_IF_ERROR(env.CreateDirs(path + "/logs"));
  auto db = db::OpenSqliteDatabase({.path = path + "/cairn.db"});
  if (!db.ok()) return Annotate(db.status(), "cannot open " + path + "/cairn.db");
  dir->db_ = std::move(db).value();
  ASSIGN_OR_RETURN(dir->objects_, store::LocalObjectStore::Create(
                                    env, dir->objects_path(), {.remove_temp_files = true}));
  ASSIGN_OR_RETURN(dir->tracking_, tracking::TrackingStore::Create(*dir->db_, env));
  ASSIGN_OR_RETURN(dir->registry_, registry::RegistryStore::Create(*dir->db_, env));
  auto keys = store::KeyRing::OpenOrCreate(env, path + "/keys");
  if (!keys.ok()) return Annotate(keys.status(), "cannot open the key ring " + path + "/keys");
  dir->keys_ = std::move(keys).value();
  ASSIGN_OR_RETURN(dir->chunks_, data::ChunkStore::Create(*dir->db_, *dir->objects_, env));
  ASSIGN_OR_RETURN(dir->datasets_, data::DatasetStore::Create(*dir->db_, *dir->chunks_, dir->keys_.get(), env));
  dir->datasets_->set_profiler(ProfileTabularFile);
  return dir;
}

std::optional<Json> DataDirectory::ProfileTabularFile(
    const data::ManifestFile& file, const std::function<absl::StatusOr<std::string>(const data::ChunkRef&)>& read) {
  if (!data::IsTabularPath(file.path)) return std::nullopt;
  auto profiler = data::TableProfiler::ForPath(file.path);
  if (!profiler.ok()) return std::nullopt;
  // A file that does not parse is recorded as such; it never fails a commit.
  auto failed = [](const absl::Status& s) { return Json{{"error", std::string(s.message())}}; };
  for (const data::ChunkRef& c : file.chunks) {
    absl::StatusOr<std::string> bytes = read(c);
    if (!bytes.ok()) return failed(bytes.status());
    if (absl::Status s = (*profiler)->Append(*bytes); !s.ok()) return failed(s);
  }
  absl::StatusOr<data::TableProfile> profile = (*profiler)->Finish();
  if (!profile.ok()) return failed(profile.status());
  return profile->ToJson();
}

}  // namespace cairn::api
