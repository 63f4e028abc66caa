#!/usr/bin/python3
"""Dataset benchmarks (issue 3, section 8): `cairn data add` beside the tools users pick today.

Prints one JSON line per measurement on stdout and one summary line per scenario (ratios, targets,
whether each is met); progress goes to stderr. Python 3 standard library only.

Scenarios (sizes at --scale 1):
  data_add_large    4 GiB of random data in 64 MiB files: cairn vs `openssl dgst -sha256` (one process)
                    vs `git add` in a git-lfs repository tracking '*.bin'.
  data_add_small    200,000 files of 4 KiB: cairn vs `git add` in a fresh repository, then re-adding the
                    unchanged tree (cairn's stat cache vs `git add` again and `git status`).
  data_edit_middle  a 1 GiB file committed, 1 MiB in its middle overwritten, committed again: the bytes
                    newly stored. Also 1 MiB inserted in the middle (the content-defined-chunking case).

Fairness: every tool reads the same files from a warm page cache. Before each timed run the script
calls sync (so no tool pays for another's writeback) and reads that run's input files once. Inputs
are generated once; the git repositories get hard links to them (made before anything is timed, so
no run changes an inode another run has cached). Git runs with no global or system configuration.
Each command is timed as a whole process (start to exit), with its CPU time and peak RSS (GNU time;
git's figures include its git-lfs filter process).

Usage:
  bench/data_bench.py [--scale 0.1] [--only data_add_small] [--workdir DIR] [--keep]
The cairn binary is $CAIRN_BIN, else build/src/main/cairn. Exit status 1 if a tool failed to run or
gave a wrong answer; a missed target is reported, not an error.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
GIB = 1 << 30
GNU_TIME = "/usr/bin/time"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCENARIOS = ("data_add_large", "data_add_small", "data_edit_middle")

# Targets from issue 3, section 8.
TARGET_VS_OPENSSL = 1.6
TARGET_VS_GIT_LFS = 4.0
TARGET_VS_GIT_ADD = 5.0
TARGET_READD_SECONDS = 0.5
TARGET_EDIT_STORED_BYTES = 5 * 1000 * 1000
TARGET_PEAK_RSS_MB = 256


class ToolError(Exception):
    """A benchmarked command failed or answered wrongly; the run is reported as failed."""


def log(msg):
    print(f"[data_bench] {msg}", file=sys.stderr, flush=True)


def emit(record):
    print(json.dumps(record), flush=True)


def mb_per_s(num_bytes, seconds):
    return round(num_bytes / 1e6 / seconds, 1) if seconds > 0 else None


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


class Timed:
    """Wall time, CPU time and peak RSS of one finished command."""

    def __init__(self, seconds, cpu_seconds, peak_rss_bytes, stdout):
        self.seconds = seconds
        self.cpu_seconds = cpu_seconds
        self.peak_rss_bytes = peak_rss_bytes
        self.stdout = stdout

    def fields(self):
        return {
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cores_busy": round(self.cpu_seconds / self.seconds, 2) if self.seconds > 0 else None,
            "peak_rss_mb": round(self.peak_rss_bytes / MIB, 1),
        }


def run_timed(cmd, cwd=None, env=None):
    """Runs cmd to completion; raises ToolError on a non-zero exit."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        start = time.monotonic()
        # The peak RSS comes from GNU time, not from our own wait4: a child spawned by this (large) Python
        # process starts its ru_maxrss at Python's, while one spawned by `time` starts at time's (~2 MB).
        proc = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", rss.name, *cmd], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        # wait4 rather than Popen.wait: it returns this child's own CPU time (including the children it
        # waited for, e.g. git's filter process), not the sum over everything this script ran.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        if proc.returncode != 0:
            stderr = err.read().decode(errors="replace")
            raise ToolError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: {stderr.strip()[-2000:]}")
        # %M is in KiB; it is the last line (GNU time writes notes about the exit status before it).
        peak_kib = int(rss.read().split()[-1])
    return Timed(seconds, usage.ru_utime + usage.ru_stime, peak_kib * 1024, stdout)


def run_quiet(cmd, cwd=None, env=None):
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except OSError as e:
        raise ToolError(f"cannot run {cmd[0]}: {e}") from e
    if result.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def files_under(root):
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    return paths


def tree_bytes(root):
    return sum(os.lstat(p).st_size for p in files_under(root))


def warm_cache(paths):
    """sync, then read every input once so that each tool starts from the same warm page cache."""
    os.sync()
    buf = bytearray(4 * MIB)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def write_random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 8 * MIB)
            f.write(os.urandom(n))
            left -= n


def link_tree(src, dst):
    """Hard-links src's files into dst (same inodes and page cache, no extra disk)."""
    run_quiet(["cp", "-al", src, dst])


class Bench:
    def __init__(self, args):
        self.scale = args.scale
        self.cairn = os.environ.get("CAIRN_BIN") or os.path.join(REPO_ROOT, "build/src/main/cairn")
        self.root = tempfile.mkdtemp(prefix="cairn-data-bench-", dir=args.workdir)
        self.keep = args.keep
        self.failed = False
        # Git as a new user has it: no global or system configuration (the identity is given per commit).
        self.git_config = os.path.join(self.root, "gitconfig")
        open(self.git_config, "w").close()
        # Inherited GIT_DIR and the like (from a hook, say) would point git elsewhere.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        self.git_env = dict(clean, GIT_CONFIG_GLOBAL=self.git_config, GIT_CONFIG_NOSYSTEM="1",
                            GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
                            GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
        # Embedded mode is the product path being measured; a CAIRN_URL would send it to a server.
        self.cairn_env = {k: v for k, v in os.environ.items() if k != "CAIRN_URL"}

    # --- cairn ---------------------------------------------------------------------------------------

    def cairn_create(self, home, name):
        run_quiet([self.cairn, "--data-dir", home, "data", "create", name], env=self.cairn_env)

    def cairn_add(self, home, name, path, files, num_bytes):
        """Times `cairn data add` in embedded mode; checks what it reports against what is on disk."""
        timed = run_timed([self.cairn, "--data-dir", home, "--json", "data", "add", name, path, "-m", "bench",
                           "--no-progress"], env=self.cairn_env)
        lines = [l for l in timed.stdout.splitlines() if l.strip()]
        try:
            report = json.loads(lines[-1])
        except (IndexError, ValueError) as e:
            raise ToolError(f"cairn data add printed no JSON object ({e}): {timed.stdout[-500:]!r}")
        if not isinstance(report, dict):
            raise ToolError(f"cairn data add printed no JSON object: {timed.stdout[-500:]!r}")
        if report.get("files") != files or report.get("bytes") != num_bytes:
            raise ToolError(f"cairn data add reports files={report.get('files')} bytes={report.get('bytes')}, "
                            f"expected files={files} bytes={num_bytes}")
        return timed, report

    # --- scenarios -----------------------------------------------------------------------------------

    def data_add_large(self):
        file_size = 64 * MIB
        count = max(1, round(64 * self.scale))
        total = count * file_size
        base = os.path.join(self.root, "large")
        src = os.path.join(base, "files")
        os.makedirs(src)
        log(f"data_add_large: writing {count} x 64 MiB of random data")
        for i in range(count):
            write_random_file(os.path.join(src, f"part-{i:04d}.bin"), file_size)
        paths = files_under(src)
        repo = os.path.join(base, "lfs-repo")
        os.makedirs(repo)
        run_quiet(["git", "init", "-q"], cwd=repo, env=self.git_env)
        run_quiet(["git", "lfs", "install", "--local"], cwd=repo, env=self.git_env)
        run_quiet(["git", "lfs", "track", "*.bin"], cwd=repo, env=self.git_env)
        link_tree(src, os.path.join(repo, "data"))
        common = {"bench": "data_add_large", "files": count, "bytes": total}
        results = {}

        def measure(tool, fn):
            log(f"data_add_large: {tool}")
            warm_cache(paths)
            try:
                timed, extra = fn()
            except ToolError as e:
                self.failed = True
                log(f"data_add_large: {tool} failed: {e}")
                emit({**common, "tool": tool, "error": str(e)})
                return
            results[tool] = timed
            emit({**common, "tool": tool, **timed.fields(), "mb_per_s": mb_per_s(total, timed.seconds), **extra})

        measure("openssl", lambda: (run_timed(["openssl", "dgst", "-sha256", *paths]), {}))

        home = os.path.join(base, "cairn-home")

        def cairn():
            self.cairn_create(home, "large")
            timed, report = self.cairn_add(home, "large", src, count, total)
            return timed, {"stored_bytes": report.get("stored_bytes"), "tool_seconds": report.get("seconds")}

        measure("cairn", cairn)
        measure("git-lfs", lambda: (run_timed(["git", "add", "-A"], cwd=repo, env=self.git_env), {}))

        rate = {tool: mb_per_s(total, t.seconds) for tool, t in results.items()}
        vs_openssl = ratio(rate.get("cairn"), rate.get("openssl"))
        vs_lfs = ratio(rate.get("cairn"), rate.get("git-lfs"))
        rss = results["cairn"].peak_rss_bytes / MIB if "cairn" in results else None
        emit({"bench": "data_add_large", "summary": True, "scale": self.scale, "bytes": total,
              "cairn_mb_per_s": rate.get("cairn"), "openssl_mb_per_s": rate.get("openssl"),
              "git_lfs_mb_per_s": rate.get("git-lfs"),
              "cairn_vs_openssl": vs_openssl, "target_vs_openssl": TARGET_VS_OPENSSL,
              "met_vs_openssl": vs_openssl is not None and vs_openssl >= TARGET_VS_OPENSSL,
              "cairn_vs_git_lfs": vs_lfs, "target_vs_git_lfs": TARGET_VS_GIT_LFS,
              "met_vs_git_lfs": vs_lfs is not None and vs_lfs >= TARGET_VS_GIT_LFS,
              "cairn_peak_rss_mb": round(rss, 1) if rss is not None else None,
              "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
              "met_peak_rss": rss is not None and rss <= TARGET_PEAK_RSS_MB})
        self.cleanup(base)

    def data_add_small(self):
        file_size = 4096
        count = max(1, round(200_000 * self.scale))
        per_dir = 1000
        base = os.path.join(self.root, "small")
        src = os.path.join(base, "tree")
        log(f"data_add_small: writing {count} files of 4 KiB")
        for i in range(count):
            if i % per_dir == 0:
                block = os.urandom(file_size * per_dir)
                shard = os.path.join(src, f"shard-{i // per_dir:04d}")
                os.makedirs(shard)
            j = i % per_dir
            with open(os.path.join(shard, f"item-{i:07d}.dat"), "wb") as f:
                f.write(block[j * file_size:(j + 1) * file_size])
        paths = files_under(src)
        total = count * file_size
        repo = os.path.join(base, "git-repo")
        os.makedirs(repo)
        run_quiet(["git", "init", "-q"], cwd=repo, env=self.git_env)
        link_tree(src, os.path.join(repo, "data"))
        common = {"bench": "data_add_small", "files": count, "bytes": total}
        seconds = {}
        rss = []

        def measure(tool, step, fn, warm=True):
            log(f"data_add_small: {tool} {step}")
            if warm:
                warm_cache(paths)
            else:
                os.sync()
            try:
                timed, extra = fn()
            except ToolError as e:
                self.failed = True
                log(f"data_add_small: {tool} {step} failed: {e}")
                emit({**common, "tool": tool, "step": step, "error": str(e)})
                return
            seconds[(tool, step)] = timed.seconds
            if tool == "cairn":
                rss.append(timed.peak_rss_bytes / MIB)
            emit({**common, "tool": tool, "step": step, **timed.fields(),
                  "files_per_s": round(count / timed.seconds) if timed.seconds > 0 else None, **extra})

        home = os.path.join(base, "cairn-home")

        def cairn_add():
            timed, report = self.cairn_add(home, "small", src, count, total)
            return timed, {"created": report.get("created"), "files_cached": report.get("files_cached"),
                           "stored_bytes": report.get("stored_bytes"), "tool_seconds": report.get("seconds")}

        try:
            self.cairn_create(home, "small")
        except ToolError as e:
            self.failed = True
            log(f"data_add_small: cairn data create failed: {e}")
        measure("cairn", "add", cairn_add)
        # The re-add finds everything in the page cache and the stat cache: nothing needs reading.
        measure("cairn", "readd_unchanged", cairn_add, warm=False)

        def git(*argv):
            return lambda: (run_timed(["git", *argv], cwd=repo, env=self.git_env), {})

        measure("git", "add", git("add", "-A"))
        measure("git", "readd_unchanged", git("add", "-A"), warm=False)
        measure("git", "status", git("status", "--porcelain"), warm=False)
        # Not in the comparison (cairn's add includes its commit); shown so that nobody has to guess.
        measure("git", "commit", git("commit", "-q", "-m", "bench"), warm=False)

        vs_git = ratio(seconds.get(("git", "add")), seconds.get(("cairn", "add")))
        readd = seconds.get(("cairn", "readd_unchanged"))
        peak = max(rss) if rss else None
        emit({"bench": "data_add_small", "summary": True, "scale": self.scale, "files": count,
              "cairn_add_seconds": round(seconds[("cairn", "add")], 3) if ("cairn", "add") in seconds else None,
              "git_add_seconds": round(seconds[("git", "add")], 3) if ("git", "add") in seconds else None,
              "cairn_speedup_vs_git_add": vs_git, "target_speedup_vs_git_add": TARGET_VS_GIT_ADD,
              "met_speedup_vs_git_add": vs_git is not None and vs_git >= TARGET_VS_GIT_ADD,
              "cairn_readd_seconds": round(readd, 3) if readd is not None else None,
              "target_readd_seconds": TARGET_READD_SECONDS,
              "met_readd": readd is not None and readd <= TARGET_READD_SECONDS,
              "git_readd_seconds": round(seconds[("git", "readd_unchanged")], 3)
              if ("git", "readd_unchanged") in seconds else None,
              "git_status_seconds": round(seconds[("git", "status")], 3) if ("git", "status") in seconds else None,
              "cairn_peak_rss_mb": round(peak, 1) if peak is not None else None,
              "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
              "met_peak_rss": peak is not None and peak <= TARGET_PEAK_RSS_MB})
        self.cleanup(base)

    def data_edit_middle(self):
        size = max(16 * MIB, round(GIB * self.scale))
        change = MIB
        base = os.path.join(self.root, "edit")
        src = os.path.join(base, "files")
        os.makedirs(src)
        path = os.path.join(src, "big.bin")
        log(f"data_edit_middle: writing {size / MIB:.0f} MiB of random data")
        write_random_file(path, size)
        home = os.path.join(base, "cairn-home")
        rss = []
        stored = {}

        def step(name, num_bytes):
            log(f"data_edit_middle: cairn {name}")
            warm_cache([path])
            before = tree_bytes(home)
            timed, report = self.cairn_add(home, "edit", src, 1, num_bytes)
            growth = tree_bytes(home) - before
            rss.append(timed.peak_rss_bytes / MIB)
            if name != "initial" and (not report.get("created") or not report.get("stored_bytes")):
                raise ToolError(f"cairn data add did not record the {name} change: {report}")
            stored[name] = report.get("stored_bytes")
            emit({"bench": "data_edit_middle", "tool": "cairn", "step": name, "file_bytes": num_bytes,
                  "changed_bytes": 0 if name == "initial" else change, **timed.fields(),
                  "stored_bytes": report.get("stored_bytes"), "data_dir_growth_bytes": growth,
                  "commit": report.get("commit")})

        try:
            self.cairn_create(home, "edit")
            step("initial", size)
            # Same size, new mtime: the stat cache must notice the change.
            with open(path, "r+b") as f:
                f.seek(size // 2)
                f.write(os.urandom(change))
            step("overwrite_1mib", size)
            # Everything after the middle shifts by 1 MiB: only content-defined chunking keeps it cheap.
            tmp = path + ".tmp"
            with open(path, "rb") as f, open(tmp, "wb") as out:
                out.write(f.read(size // 2))
                out.write(os.urandom(change))
                shutil.copyfileobj(f, out, 8 * MIB)
            os.replace(tmp, path)
            step("insert_1mib", size + change)
        except ToolError as e:
            self.failed = True
            log(f"data_edit_middle: failed: {e}")
            emit({"bench": "data_edit_middle", "tool": "cairn", "error": str(e)})

        over = stored.get("overwrite_1mib")
        ins = stored.get("insert_1mib")
        peak = max(rss) if rss else None
        emit({"bench": "data_edit_middle", "summary": True, "scale": self.scale, "file_bytes": size,
              "changed_bytes": change, "overwrite_stored_bytes": over, "insert_stored_bytes": ins,
              "target_stored_bytes": TARGET_EDIT_STORED_BYTES,
              "met_overwrite": over is not None and over <= TARGET_EDIT_STORED_BYTES,
              "met_insert": ins is not None and ins <= TARGET_EDIT_STORED_BYTES,
              "cairn_peak_rss_mb": round(peak, 1) if peak is not None else None,
              "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
              "met_peak_rss": peak is not None and peak <= TARGET_PEAK_RSS_MB})
        self.cleanup(base)

    def cleanup(self, path):
        if not self.keep:
            shutil.rmtree(path, ignore_errors=True)

    def finish(self):
        if self.keep:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def has_sha_ni():
    try:
        with open("/proc/cpuinfo") as f:
            return " sha_ni" in f.read()
    except OSError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the full sizes (0.1: 400 MB, 20k files, 100 MB file)")
    parser.add_argument("--only", action="append", choices=SCENARIOS,
                        help="run only this scenario (repeatable)")
    parser.add_argument("--workdir", help="where to put the temporary data (default: $TMPDIR or /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data")
    args = parser.parse_args()
    if args.scale <= 0:
        parser.error("--scale must be positive")

    for tool in ("openssl", "git", "cp"):
        if shutil.which(tool) is None:
            sys.exit(f"data_bench: {tool} not found (run scripts/setup.sh)")
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"data_bench: {GNU_TIME} (GNU time, for peak RSS) not found (run scripts/setup.sh)")
    if subprocess.run(["git", "lfs", "version"], capture_output=True).returncode != 0:
        sys.exit("data_bench: git-lfs not found (run scripts/setup.sh)")

    bench = Bench(args)
    usage = shutil.disk_usage(bench.root)
    log(f"working in {bench.root} ({usage.free / GIB:.0f} GiB free), cairn = {bench.cairn}")
    emit({"bench": "data_bench_env", "scale": args.scale, "cpus": os.cpu_count(), "cpu_sha_ni": has_sha_ni(),
          "loadavg_1m": os.getloadavg()[0],
          "page_cache": "warm for every tool: sync, then each timed run's input files read once just before it",
          "cairn_mode": "embedded (--data-dir)"})
    try:
        for name in SCENARIOS:
            if args.only is None or name in args.only:
                getattr(bench, name)()
    finally:
        bench.finish()
    sys.exit(1 if bench.failed else 0)


if __name__ == "__main__":
    main()
