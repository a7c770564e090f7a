"""Print the README's zoo table from zoo/*/metadata.json (the figures come from the entries themselves).

    python scripts/zoo/table.py            # markdown table on stdout
    python scripts/zoo/table.py --readme   # also replace the table between the markers in README.md
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"


def first_stage(pretraining):
    """What a tuned entry's first stage was: diffusion pre-training (ECT) or an unconditional iCT run."""
    return "diffusion" if pretraining.get("method") == "edm" else f"unconditional ({pretraining.get('preset', 'ict')})"


def table():
    lines = ["| name | dataset | params | steps (batch) | FID 1-step | FID 2-step | files |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for meta_path in sorted((REPO / "zoo").glob("*/metadata.json")):
        meta = json.loads(meta_path.read_text())
        fids = {r["steps"]: r for r in meta["fid"]}
        fid = lambda s: f"{fids[s]['fid']:.2f} ({fids[s]['metric']})" if s in fids else "-"  # noqa: E731
        pre = meta.get("pretraining")
        steps = f"{meta['steps']:,} ({meta['batch_size']})" + (f" + {pre['steps']:,} {first_stage(pre)}" if pre else "")
        size = sum((meta_path.parent / f).stat().st_size for f in meta["files"]) / 2**20
        lines.append(
            f"| [`{meta['name']}`](zoo/{meta['name']}/README.md) | {meta['dataset'].split(' (')[0]} | {meta['params']:,} | "
            f"{steps} | {fid(1)} | {fid(2)} | weights, SavedModel, ONNX ({size:.1f} MB) |"
        )
    return "\n".join(lines)


def main():
    text = table()
    print(text)
    if "--readme" in sys.argv:
        readme = REPO / "README.md"
        content = readme.read_text()
        start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
        readme.write_text(content[:start] + "\n" + text + "\n" + content[end:])


if __name__ == "__main__":
    main()
