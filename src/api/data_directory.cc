#include "api/data_directory.h"

#include "db/sqlite_database.h"
#include "store/local_object_store.h"

namespace cairn::api {

DataDirectory::~DataDirectory() = default;

absl::StatusOr<std::unique_ptr<DataDirectory>> DataDirectory::Open(Env& env, const std::string& path, Role role) {
  auto dir = std::unique_ptr<DataDirectory>(new DataDirectory(env, path));
  RETURN_IF_ERROR(Annotate(env.CreateDirs(path), "cannot create data directory " + path));
  RETURN_IF_ERROR(env.CreateDirs(path + "/logs"));
  auto db = db::OpenSqliteDatabase({.path = path + "/cairn.db"});
  if (!db.ok()) return Annotate(db.status(), "cannot open " + path + "/cairn.db");
  dir->db_ = std::move(db).value();
  ASSIGN_OR_RETURN(dir->objects_, store::LocalObjectStore::Create(
                                    env, dir->objects_path(), {.remove_temp_files = role == Role::kServer}));
  ASSIGN_OR_RETURN(dir->tracking_, tracking::TrackingStore::Create(*dir->db_, env));
  return dir;
}

}  // namespace cairn::api
