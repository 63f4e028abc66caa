// `cairn exec-job JOB_DIR`: runs the job a job directory describes
// (spec.json) in the local sandbox, in the foreground, and writes its
// output.log and result.json there. Not for people: the Slurm batch script
// (exec/slurm_executor.h) runs it on a node, so it is hidden from --help.
//
// It exits 0 whatever the job's own exit code (that is in result.json),
// and 1 only when the launcher itself failed (the message on stderr; then
// the Slurm job fails and the executor reports that). SIGTERM and SIGINT
// (scancel, Slurm's time limit) stop the job cleanly: it ends kCancelled and
// result.json is still written.
//
// Thread-safety: the CLI runs one command at a time.
#ifndef CAIRN_CLI_EXEC_COMMANDS_H_
#define CAIRN_CLI_EXEC_COMMANDS_H_

namespace CLI {
class App;
}  // namespace CLI

namespace cairn::cli {

// Registers `exec-job` on `app`; a failing launcher sets `exit_code` to 1.
// `exit_code` must outlive parsing.
void AddExecCommands(CLI::App& app, int& exit_code);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_EXEC_COMMANDS_H_
