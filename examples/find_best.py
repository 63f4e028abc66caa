#!/usr/bin/env python3
"""Find the best runs of an experiment by a metric (companion to train.py).

Prints a table of the top runs, then the best run's params, metrics and
artifacts; optionally downloads the best run's artifacts.

    python3 examples/find_best.py --experiment cairn-demo --metric test_f1 --top 5
    python3 examples/find_best.py --metric test_log_loss --ascending --download /tmp/best
"""

import argparse
import datetime
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import cairn  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default=os.environ.get("CAIRN_EXPERIMENT", "cairn-demo"))
    p.add_argument("--metric", default="test_accuracy")
    p.add_argument("--ascending", action="store_true", help="lower is better (e.g. losses)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--filter", default="", help="extra MLflow filter, e.g. \"params.model = 'rf'\"")
    p.add_argument("--all-statuses", action="store_true", help="include FAILED/KILLED/RUNNING runs")
    p.add_argument("--download", metavar="DIR", help="download the best run's artifacts here")
    p.add_argument("--tracking-uri", default=None)
    return p.parse_args(argv)


def quoted(key):
    """metrics.<key> in MLflow's filter grammar; backticks for keys that are not identifiers."""
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"`{key}`"


def fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def print_table(rows, headers):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def artifact_tree(run_id, path=None, depth=0, out=None):
    out = [] if out is None else out
    for e in cairn.list_artifacts(run_id, path):
        name = e["path"].rsplit("/", 1)[-1]
        if e["is_dir"]:
            out.append(f"{'  ' * depth}{name}/")
            artifact_tree(run_id, e["path"], depth + 1, out)
        else:
            out.append(f"{'  ' * depth}{name}  ({e.get('file_size', '?')} bytes)")
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.tracking_uri:
        cairn.set_tracking_uri(args.tracking_uri)

    clauses = []
    if not args.all_statuses:
        clauses.append("attributes.status = 'FINISHED'")
    if args.filter:
        clauses.append(f"({args.filter})" if " or " in args.filter.lower() else args.filter)
    order = f"metrics.{quoted(args.metric)} {'ASC' if args.ascending else 'DESC'}"
    try:
        runs = cairn.search_runs(experiment_names=[args.experiment],
                                 filter_string=" and ".join(clauses),
                                 order_by=[order, "attributes.start_time DESC"],
                                 max_results=args.top)
        # Runs that never logged the metric sort last; drop them.
        runs = [r for r in runs if args.metric in r["data"]["metrics"]]
    except cairn.CairnError as e:
        print(f"search failed: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"no finished runs with metric {args.metric!r} in experiment {args.experiment!r}",
              file=sys.stderr)
        return 1

    extra = [m for m in ("test_accuracy", "test_f1", "test_roc_auc", "test_log_loss")
             if m != args.metric]
    headers = ["#", "run_id", "run_name", "model", "dataset", args.metric] + extra + ["started"]
    rows = []
    for i, r in enumerate(runs, 1):
        info, data = r["info"], r["data"]
        started = datetime.datetime.fromtimestamp(info.get("start_time", 0) / 1000)
        rows.append([str(i), info["run_id"][:12], info.get("run_name", ""),
                     data["params"].get("model", ""), data["params"].get("dataset", ""),
                     fmt(data["metrics"].get(args.metric))]
                    + [fmt(data["metrics"].get(m)) for m in extra]
                    + [started.strftime("%Y-%m-%d %H:%M:%S")])
    print(f"Top {len(runs)} runs of {args.experiment!r} by {order}:\n")
    print_table(rows, headers)

    best = runs[0]
    run_id = best["info"]["run_id"]
    print(f"\nBest run: {run_id}  ({best['info'].get('run_name', '')}, "
          f"status {best['info'].get('status')})")
    print("\nParams:")
    for k, v in sorted(best["data"]["params"].items()):
        print(f"  {k} = {v}")
    print("\nMetrics (latest values):")
    for k, v in sorted(best["data"]["metrics"].items()):
        print(f"  {k} = {fmt(v)}")
    print("\nArtifacts:")
    for line in artifact_tree(run_id) or ["  (none)"]:
        print(f"  {line}")

    if args.download:
        for e in cairn.list_artifacts(run_id):
            local = cairn.download_artifact(run_id, e["path"], args.download)
            print(f"downloaded {e['path']} -> {local}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
