// A pipeline step's output as a run artifact, so that a model a pipeline
// trained can be registered like one logged with MLflow:
// `cairn models register NAME --run STEP_RUN --path model` (source
// runs:/STEP_RUN/model). A step's output folder is committed as a dataset
// commit (tag `cairn.output.OUTPUT` on the step's run names it; see
// docs/pipelines.md); this copies that commit's files into the run's
// artifacts under OUTPUT/, once, every chunk verified on the way.
//
// Thread-safety: thread-safe (two concurrent calls write the same
// content-addressed objects and artifact records).
#ifndef CAIRN_API_STEP_OUTPUTS_H_
#define CAIRN_API_STEP_OUTPUTS_H_

#include <string>

#include "api/data_directory.h"
#include "base/status.h"

namespace cairn::api {

// Copies output `output` of step run `run_id` into its artifacts (at
// ARTIFACT_ROOT/OUTPUT/...). OK and nothing done when the run has no such
// output, or already has artifacts there. kNotFound for an unknown run.
absl::Status PublishStepOutput(DataDirectory& dir, const std::string& run_id, const std::string& output);

}  // namespace cairn::api

#endif  // CAIRN_API_STEP_OUTPUTS_H_
