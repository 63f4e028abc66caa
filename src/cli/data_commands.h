// `cairn data ...` (versioned datasets), `cairn gc` and `cairn keys rotate`.
//
// `data add` cuts files into chunks and hashes them on every core. In
// embedded mode it writes straight into the data directory's chunk store;
// against a server it asks which chunks the server lacks and uploads only
// those, so an interrupted upload resumes where it stopped. A stat cache per
// dataset (embedded: <data-dir>/cache/; remote: ~/.cache/cairn/) lets an
// unchanged tree be re-added without reading it. All other commands go
// through the API (api/data_api.h), over HTTP or in-process.
//
// Thread-safety: the CLI runs one command at a time.
#ifndef CAIRN_CLI_DATA_COMMANDS_H_
#define CAIRN_CLI_DATA_COMMANDS_H_

#include "cli/cli_common.h"

namespace CLI {
class App;
}  // namespace CLI

namespace cairn::cli {

// Registers the commands on `app`; a failing command sets `exit_code`.
// `g` and `exit_code` must outlive parsing.
void AddDataCommands(CLI::App& app, GlobalOptions& g, int& exit_code);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_DATA_COMMANDS_H_
