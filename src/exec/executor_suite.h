// The shared test suite every Executor implementation passes (local
// sandbox, Slurm): the job layout and environment of executor.h, isolation
// (files, network, user), limits (memory, processes, wall time), logs,
// cancellation, errors and concurrency. Test-only: include from *_test.cc.
//
// An implementation instantiates it with a factory:
//
//   #include "exec/executor_suite.h"
//   ExecutorFactory LocalFactory() {
//     ExecutorFactory f;
//     f.name = "local";
//     f.make_executor = [] { ... return SandboxExecutor::Create(options); };
//     f.make_dir = [] { ... return a fresh empty directory path; };
//     return f;
//   }
//   INSTANTIATE_TEST_SUITE_P(Local, ExecutorSuite, ::testing::Values(LocalFactory()),
//                            ExecutorFactoryName);
//
// and compiles exec/executor_suite.cc into the same test binary (its tests
// register themselves when linked in).
//
// Thread-safety: a fixture belongs to one test.
#ifndef CAIRN_EXEC_EXECUTOR_SUITE_H_
#define CAIRN_EXEC_EXECUTOR_SUITE_H_

#include <functional>
#include <ostream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "base/status.h"
#include "exec/executor.h"

namespace cairn::exec {

struct ExecutorFactory {
  std::string name;  // the instantiation's name in test names: [A-Za-z0-9_]
  // A fresh executor for one test.
  std::function<absl::StatusOr<std::unique_ptr<Executor>>()> make_executor;
  // A fresh, empty directory that the executor's jobs can reach (on a path
  // shared with the Slurm nodes for Slurm), for job dirs, code, inputs and
  // outputs. The suite removes it after the test.
  std::function<std::string()> make_dir;
  // How long the suite waits for a job that should end quickly; generous
  // for a loaded machine or a batch queue.
  absl::Duration patience = absl::Seconds(60);
};

// For INSTANTIATE_TEST_SUITE_P's name generator.
std::string ExecutorFactoryName(const ::testing::TestParamInfo<ExecutorFactory>& info);
// So that gtest prints a factory as its name.
void PrintTo(const ExecutorFactory& factory, std::ostream* os);

class ExecutorSuite : public ::testing::TestWithParam<ExecutorFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A new directory under the test's root (see ExecutorFactory::make_dir).
  std::string NewDir(const std::string& name);
  // A spec with its own job dir and code dir, running `argv`.
  JobSpec NewSpec(std::vector<std::string> argv);
  // Runs `spec` to its end (ASSERTs inside: check HasFatalFailure()).
  JobStatus RunJob(const JobSpec& spec);
  // The whole log of a job, without the sandbox's own notes
  // (kSandboxNotePrefix lines).
  std::string ReadWholeLog(const JobId& id);
  // `log` without the sandbox's notes.
  static std::string JobOutput(const std::string& log);

  std::unique_ptr<Executor> executor_;
  std::string root_;

 private:
  int dirs_ = 0;
};

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_EXECUTOR_SUITE_H_
