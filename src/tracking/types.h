// The tracking domain: experiments, runs and what is logged to them, as
// plain values. Field meanings follow MLflow's service.proto, so the API can
// map them one to one.
//
// Thread-safety: plain values.
#ifndef CAIRN_TRACKING_TYPES_H_
#define CAIRN_TRACKING_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cairn::tracking {

enum class LifecycleStage { kActive, kDeleted };
// MLflow's ViewType.
enum class ViewType { kActiveOnly, kDeletedOnly, kAll };

struct Tag {
  std::string key;
  std::string value;
  bool operator==(const Tag&) const = default;
};
using Param = Tag;

struct Metric {
  std::string key;
  double value = 0;
  int64_t timestamp = 0;  // unix ms
  int64_t step = 0;
};

// One point of a metric's history (the key is held once, by its owner).
struct MetricPoint {
  double value = 0;
  int64_t timestamp = 0;  // unix ms
  int64_t step = 0;
};

struct Experiment {
  std::string experiment_id;
  std::string name;
  std::string artifact_location;
  LifecycleStage lifecycle_stage = LifecycleStage::kActive;
  int64_t creation_time = 0;
  int64_t last_update_time = 0;
  std::vector<Tag> tags;
};

// MLflow run statuses.
inline constexpr const char* kRunStatuses[] = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"};

struct RunInfo {
  std::string run_id;
  std::string run_name;
  std::string experiment_id;
  std::string user_id;
  std::string status;
  std::optional<int64_t> start_time;
  std::optional<int64_t> end_time;
  std::string artifact_uri;
  LifecycleStage lifecycle_stage = LifecycleStage::kActive;
};

struct DatasetRef {
  std::string name;
  std::string digest;
  std::string source_type;
  std::string source;
  std::string schema;
  std::string profile;
};

struct DatasetInput {
  std::vector<Tag> tags;
  DatasetRef dataset;
};

struct Run {
  RunInfo info;
  std::vector<Metric> metrics;  // latest value of each metric
  std::vector<Param> params;
  std::vector<Tag> tags;
  std::vector<DatasetInput> inputs;
};

// An artifact file or directory below a listed path.
struct ArtifactEntry {
  std::string path;  // relative to the listed directory's root (see TrackingStore::ListArtifacts)
  bool is_dir = false;
  int64_t file_size = 0;  // files only
};

struct ArtifactFile {
  std::string digest;  // hex SHA-256 of the content in the ObjectStore
  int64_t size = 0;
};

}  // namespace cairn::tracking

#endif  // CAIRN_TRACKING_TYPES_H_
