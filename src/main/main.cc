// The `cairn` binary: everything happens in cli::RunCli.
#include "cli/cli.h"

int main(int argc, char** argv) { return cairn::cli::RunCli(argc, argv); }
