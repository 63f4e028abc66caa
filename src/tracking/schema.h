// The tracking component's database schema, as versioned migrations.
// docs/schema.md describes every table; keep the two in step.
#ifndef CAIRN_TRACKING_SCHEMA_H_
#define CAIRN_TRACKING_SCHEMA_H_

#include <span>

#include "db/database.h"

namespace cairn::tracking {

std::span<const db::Migration> TrackingMigrations();

}  // namespace cairn::tracking

#endif  // CAIRN_TRACKING_SCHEMA_H_
