"""What every experiment script shares: its command line (--out DIR, --quick) and writing results."""

from __future__ import annotations

import argparse
import csv
import json
import os


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, help="folder for the PNG figures and the JSON/CSV numbers")
    parser.add_argument("--quick", action="store_true", help="small sizes: finishes in seconds (what tests run)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and data")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


def write_json(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_csv(path: str, header: list[str], rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
