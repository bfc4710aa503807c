"""What every experiment script shares: its command line (--out DIR, --quick) and writing results.

Not an experiment itself: the documentation's gallery runs every other script in this folder."""

from __future__ import annotations

import argparse
import csv
import json
import os


def title(docstring: str | None) -> str:
    """The title of a script's docstring (its first line of text, without the reST underline)."""
    lines = [line.strip() for line in (docstring or "").strip().splitlines()]
    return lines[0].replace("``", "") if lines else ""


def parse_args(docstring: str | None) -> argparse.Namespace:
    """--out DIR (created), --quick and --seed, with the script's title as the description."""
    parser = argparse.ArgumentParser(description=title(docstring))
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
