// The data module's tables (component "data" in schema_migrations):
// datasets, commits, refs, profiles and the chunk index. Described column by
// column in docs/schema.md ("Datasets").
//
// Thread-safety: constants only.
#ifndef CAIRN_DATA_SCHEMA_H_
#define CAIRN_DATA_SCHEMA_H_

#include <span>

#include "db/database.h"

namespace cairn::data {

std::span<const db::Migration> DataMigrations();

}  // namespace cairn::data

#endif  // CAIRN_DATA_SCHEMA_H_
