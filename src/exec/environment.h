// Environment capture: what a pipeline step ran on (operating system, Python
// and its packages, the OS package set), recorded with every tracked run and
// folded into the run cache key. Two machines with the same software give the
// same Digest(), so a step re-run on an identical machine hits the cache; an
// upgraded package changes it, so the step runs again.
//
// What is read (all below `root_dir`, or "/" when it is empty):
//   os                  PRETTY_NAME of etc/os-release (else usr/lib/os-release)
//   python              usr/bin/python3: the minor version from its symlink
//                       target ("python3.11"), completed to "3.11.2" from the
//                       dpkg status (package python3.11-minimal or python3.11),
//                       else usr/include/python3.11/patchlevel.h, else the
//                       version string embedded in the interpreter binary.
//                       No process is started (a sandbox root's binaries may not
//                       even run on the host). Empty when there is no python3.
//   python_packages     Name: and Version: of every *.dist-info/METADATA and
//                       *.egg-info (file, or directory with PKG-INFO) in the
//                       directories Debian's python3 imports from, in its
//                       sys.path order: usr/local/lib/python3.X/dist-packages,
//                       usr/local/lib/python3.X/site-packages,
//                       usr/lib/python3.X/site-packages,
//                       usr/lib/python3/dist-packages. A package found twice
//                       counts once, with the version Python would import
//                       (the first); names are compared PEP 503-normalised.
//   os_packages_digest  SHA-256 of var/lib/dpkg/status ("" when absent), and
//                       os_package_count its "install ok installed" stanzas.
//   kernel, host, arch  uname(2) of this machine, whatever root_dir is.
// Capture takes a few milliseconds (about a hundred small file reads and
// one hash of a ~1 MB file).
//
// Thread-safety: CaptureEnvironment is reentrant; EnvironmentInfo is a value.
//
// Usage:
//   ASSIGN_OR_RETURN(exec::EnvironmentInfo env, exec::CaptureEnvironment(spec.environment));
//   cache_key_parts.push_back(env.Digest());
//   run_tags.push_back({"cairn.environment", env.ToJson().dump()});
#ifndef CAIRN_EXEC_ENVIRONMENT_H_
#define CAIRN_EXEC_ENVIRONMENT_H_

#include <string>
#include <utility>
#include <vector>

#include "base/json.h"
#include "base/status.h"

namespace cairn::exec {

struct EnvironmentInfo {
  std::string os;      // "Debian GNU/Linux 12 (bookworm)"; "" when unknown
  std::string kernel;  // uname -r
  std::string host;    // hostname
  std::string arch;    // uname -m, e.g. "x86_64"
  std::string python;  // e.g. "3.11.2"; "" when there is no usr/bin/python3
  // name -> version, names as their metadata writes them, sorted bytewise by name.
  std::vector<std::pair<std::string, std::string>> python_packages;
  std::string os_packages_digest;  // SHA-256 hex of the dpkg status file, "" if none
  int os_package_count = 0;

  // Every field, as a JSON object whose dump() is canonical (keys sorted;
  // python_packages an object name -> version).
  Json ToJson() const;
  // SHA-256 hex identifying the environment for the run cache: every field
  // except host and kernel (a re-run on another identical machine must hit
  // the cache), with a format version so that a change of what is captured
  // never makes old and new digests collide.
  std::string Digest() const;
};

// Captures the environment of `root_dir` (an environment folder used as a
// sandbox's read-only root), or of this machine when `root_dir` is empty.
// Missing pieces leave their fields empty: a root without Python or dpkg is
// a valid environment. Errors: kNotFound when `root_dir` is not a directory;
// kPermissionDenied / kInternal (naming the path) when a file that exists
// cannot be read.
absl::StatusOr<EnvironmentInfo> CaptureEnvironment(const std::string& root_dir);

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_ENVIRONMENT_H_
