// The `cairn` binary: everything happens in cli::RunCli.
#include "absl/synchronization/mutex.h"
#include "cli/cli.h"

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Abseil's lock-order graph (deadlock detection) costs every lock and
  // unlock a lookup; the debug builds the tests run keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  return cairn::cli::RunCli(argc, argv);
}
