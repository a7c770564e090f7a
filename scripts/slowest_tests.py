"""The slowest tests of a suite run, from pytest's JUnit XML files (one per backend pass).

    python scripts/slowest_tests.py --top 25 reports/tensorflow.xml reports/jax.xml reports/torch.xml

The backend is the file's stem. Prints one table, slowest first, and each file's summed test time.
"""

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def read_report(path):
    """[(seconds, test id, outcome)] of every test case in one JUnit XML file."""
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        rows.append((float(case.get("time", 0.0)), name, outcome))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    everything = []
    print("=== summed test time per pass (with workers, wall time is less) ===")
    for path in args.reports:
        if not path.is_file():
            print(f"{path.stem}: no report")
            continue
        rows = read_report(path)
        print(f"{path.stem}: {len(rows)} tests, {sum(r[0] for r in rows):.0f} s")
        everything += [(seconds, path.stem, name, outcome) for seconds, name, outcome in rows]
    print(f"=== {args.top} slowest tests ===")
    for seconds, backend, name, outcome in sorted(everything, reverse=True)[: args.top]:
        print(f"{seconds:8.1f} s  {backend:10s}  {name}" + ("" if outcome == "passed" else f"  [{outcome}]"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
