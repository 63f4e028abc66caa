// DataDirectory: an opened Cairn data directory — the embedded deployment's
// metadata database (cairn.db, SQLite WAL), object store (objects/) and the
// domain stores on top. Both `cairn server` and the CLI's embedded mode open
// one. Layout: docs/data-directory.md.
//
// Thread-safety: thread-safe (every member is).
//
// Usage:
//   ASSIGN_OR_RETURN(auto dir, DataDirectory::Open(env, "./cairn-data"));
//   dir->tracking().CreateExperiment(...);
#ifndef CAIRN_API_DATA_DIRECTORY_H_
#define CAIRN_API_DATA_DIRECTORY_H_

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"

#include "base/env.h"
#include "data/chunk_store.h"
#include "data/dataset_store.h"
#include "db/database.h"
#include "registry/registry_store.h"
#include "store/encryption.h"
#include "store/object_store.h"
#include "tracking/tracking_store.h"

namespace cairn::api {

class PipelineService;
struct PipelineServiceOptions;

class DataDirectory {
 public:
  enum class Role {
    kServer,  // the process that owns the directory: cleans up after crashes at open
    kClient,  // a CLI opening it beside a possibly running server: touches nothing in flight
              // (it removes only dead writers' temp files, which is safe beside live ones)
  };
  // Creates the directory and its parts if missing. `env` is not owned.
  static absl::StatusOr<std::unique_ptr<DataDirectory>> Open(Env& env, const std::string& path,
                                                             Role role = Role::kServer);
  ~DataDirectory();
  DataDirectory(const DataDirectory&) = delete;
  DataDirectory& operator=(const DataDirectory&) = delete;

  const std::string& path() const { return path_; }
  std::string objects_path() const { return path_ + "/objects"; }
  Env& env() { return env_; }
  db::Database& database() { return *db_; }
  store::ObjectStore& objects() { return *objects_; }
  tracking::TrackingStore& tracking() { return *tracking_; }
  store::KeyRing& keys() { return *keys_; }
  data::ChunkStore& chunks() { return *chunks_; }
  data::DatasetStore& datasets() { return *datasets_; }
  // The model registry (registered models, versions, aliases, gates, deployments).
  registry::RegistryStore& registry() { return *registry_; }
  // The pipeline scheduler and its executors, made on first use (a server
  // makes it at start with `options.server`; later calls ignore `options`).
  absl::StatusOr<PipelineService*> pipelines(const PipelineServiceOptions& options);
  absl::StatusOr<PipelineService*> pipelines();
  // Where pipelines keep code snapshots, materialised inputs and job folders:
  // absolute, since job specs name host paths.
  std::string work_path() const { return absolute_path_ + "/work"; }

 private:
  DataDirectory(Env& env, std::string path);
  // The profiler of tabular files at commit (data/profile.h).
  static std::optional<Json> ProfileTabularFile(
      const data::ManifestFile& file, const std::function<absl::StatusOr<std::string>(const data::ChunkRef&)>& read);

  Env& env_;
  std::string path_;
  std::string absolute_path_;
  std::unique_ptr<db::Database> db_;
  std::unique_ptr<store::ObjectStore> objects_;
  std::unique_ptr<store::KeyRing> keys_;
  std::unique_ptr<data::ChunkStore> chunks_;
  std::unique_ptr<data::DatasetStore> datasets_;
  std::unique_ptr<tracking::TrackingStore> tracking_;
  std::unique_ptr<registry::RegistryStore> registry_;
  absl::Mutex pipelines_mu_;
  std::unique_ptr<PipelineService> pipelines_ ABSL_GUARDED_BY(pipelines_mu_);  // declared last: destroyed first
};

}  // namespace cairn::api

#endif  // CAIRN_API_DATA_DIRECTORY_H_
