// The `cairn` command line: parses arguments and runs one subcommand
// (server, fsck, experiments, runs, artifacts). Returns the process exit
// code: 0 success, 1 the operation failed, 2 bad usage.
//
// Thread-safety: call once, from main().
#ifndef CAIRN_CLI_CLI_H_
#define CAIRN_CLI_CLI_H_

namespace cairn::cli {

int RunCli(int argc, char** argv);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_CLI_H_
