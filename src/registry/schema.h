// The model registry's database schema, as versioned migrations of component
// "registry". docs/schema.md ("Registry tables") describes every table; keep
// the two in step.
#ifndef CAIRN_REGISTRY_SCHEMA_H_
#define CAIRN_REGISTRY_SCHEMA_H_

#include <span>

#include "db/database.h"

namespace cairn::registry {

std::span<const db::Migration> RegistryMigrations();

}  // namespace cairn::registry

#endif  // CAIRN_REGISTRY_SCHEMA_H_
