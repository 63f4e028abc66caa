#!/usr/bin/env python3
"""Writes a scikit-learn data set as a train/test folder of CSV files, ready for
`cairn data add` (one stratified split; the last column is the target).

    python3 examples/export_dataset.py --dataset breast_cancer --out /tmp/tumours
    cairn data create tumours
    cairn data add tumours /tmp/tumours --split train='train/**' --split test='test/**' --seal test
"""

import argparse
import csv
import os
import shutil

from sklearn import datasets
from sklearn.model_selection import train_test_split

LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "iris": datasets.load_iris,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(LOADERS), default="breast_cancer")
    p.add_argument("--out", required=True, help="folder to write train/data.csv and test/data.csv into")
    p.add_argument("--test-size", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rows", type=int, default=None, help="use only the first N rows (to make a smaller version)")
    p.add_argument("--keep-test-from", default=None,
                   help="a folder written before: keep its test split as it is and put every other row in train "
                        "(new data for training, the sealed test set untouched)")
    args = p.parse_args()
    data = LOADERS[args.dataset]()
    X, y = data.data, data.target
    if args.rows:
        X, y = X[: args.rows], y[: args.rows]
    names = [n.replace(" ", "_") for n in data.feature_names]
    if args.keep_test_from:
        with open(os.path.join(args.keep_test_from, "test", "data.csv")) as f:
            kept = {tuple(row[:-1]) for row in list(csv.reader(f))[1:]}
        in_test = [tuple(repr(v) for v in row) in kept for row in X.tolist()]
        X_tr = X[[not t for t in in_test]]
        y_tr = y[[not t for t in in_test]]
        X_te, y_te = X[in_test], y[in_test]
    else:
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=args.test_size, random_state=args.seed,
                                                  stratify=y)
    for split, Xs, ys in (("train", X_tr, y_tr), ("test", X_te, y_te)):
        os.makedirs(os.path.join(args.out, split), exist_ok=True)
        if split == "test" and args.keep_test_from:
            shutil.copyfile(os.path.join(args.keep_test_from, "test", "data.csv"),
                            os.path.join(args.out, "test", "data.csv"))
            print(f"test: {len(ys)} rows kept from {args.keep_test_from}")
            continue
        with open(os.path.join(args.out, split, "data.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names + ["target"])
            for row, target in zip(Xs.tolist(), ys.tolist()):
                w.writerow([repr(v) for v in row] + [target])
        print(f"{split}: {len(ys)} rows -> {os.path.join(args.out, split, 'data.csv')}")


if __name__ == "__main__":
    main()
