"""FID of a consistency model's two-step sampler against the intermediate sigma (the paper's "two-step sigma").

    python benchmarks/two_step_sigma.py --model mnist --ref fid_refs/mnist-train-32px.npz \
        --sigmas 0.4,0.821,1.5 [--num 2000] [--json benchmarks/results/two_step_sigma_mnist.json]

The two-step sampler goes sigma_max -> x0 -> x0 + s z -> x0 with one intermediate sigma s. The paper picked
s per data set by searching FID (0.821 for CIFAR-10, 1.526 for ImageNet 64); the CPU presets took CIFAR-10's
value for MNIST and CIFAR-10 alike. This script scores each s at fixed seeds (the zoo's protocol: image i from
seed i, labels seed % K) and writes JSON (model, protocol, one row per s) and a PNG (FID against s, the model's
recorded s marked). Rows already in the JSON for the same model weights, reference and count are kept, so a
second call with more sigmas refines the search without scoring a sigma twice. Set the chosen value with
`--set two_step_sigma=S` when the model is trained (it becomes the model's recorded two-step sigmas).

A small-sample FID (FID-2k by default) is biased upwards and noisy by about a point: read a minimum that is
several points below its neighbours, not a single lowest row. For 32x32x1 models (padded MNIST) each row also gets
the digit judge's scores of the same seeds (`keras_ict.digit_judge`: share of recognisable digits, the judge's
distance, the requested digit for a class-conditional model; `--no-judge` skips them): on MNIST, Inception FID and
the judge do not always agree on which sigma draws better digits (BUILD_NOTES.md, "CPU recipe study").
"""

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import parse_number_list, repo_relative, save_figure, versions, write_json  # noqa: E402


def parse_sigmas(text):
    return parse_number_list(text, "--sigmas")


def check_sigmas(sigmas, sigma_min, sigma_max):
    bad = [s for s in sigmas if not sigma_min < s < sigma_max]
    if bad:
        raise ValueError(f"two-step sigmas must lie strictly between sigma_min {sigma_min:g} and sigma_max {sigma_max:g}, "
                         f"got {bad}")


def earlier_report(path, key):
    """An earlier JSON made for the same model weights, reference and count (`key`), else None."""
    import json

    path = Path(path)
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    return report if report.get("key") == key else None


def kept_rows(path, key):
    """Rows of an earlier JSON made for the same model weights, reference and count (`key`), else none."""
    report = earlier_report(path, key)
    return report.get("rows", []) if report else []


JUDGE_COLUMNS = ("judge_recognisable", "judge_label_accuracy", "judge_fd")


def judge_columns(scores):
    return {k: round(float(scores[k]), 4) for k in JUDGE_COLUMNS if k in scores}


def best_row(rows):
    return min(rows, key=lambda r: r["fid"]) if rows else None


def table(report):
    best = best_row(report["rows"])
    recorded = report["model"].get("recorded_two_step_sigma")
    judged = [k for k in JUDGE_COLUMNS if any(k in r for r in report["rows"])]
    lines = [f"| two-step sigma | {report['metric']} | " + "".join(f"{k} | " for k in judged) + "wall s |",
             "| ---: | ---: | " + "---: | " * len(judged) + "---: |"]
    for row in sorted(report["rows"], key=lambda r: r["sigma"]):
        marks = (" (recorded)" if recorded is not None and abs(row["sigma"] - recorded) < 1e-9 else "") + \
            (" **best**" if row is best else "")
        cells = "".join(f"{row[k]:.3f} | " if k in row else "- | " for k in judged)
        lines.append(f"| {row['sigma']:g}{marks} | {row['fid']:.2f} | {cells}{row['wall_s']:.0f} |")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["rows"], key=lambda r: r["sigma"])
    judged = [r for r in rows if "judge_recognisable" in r]
    fig, axes = plt.subplots(1, 2 if judged else 1, figsize=(11 if judged else 6, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot([r["sigma"] for r in rows], [r["fid"] for r in rows], "o-")
    ax.set(ylabel=report["metric"], title=f"{report['model']['name']}: two-step FID against its intermediate sigma")
    if judged:
        judge_ax = axes[0][1]
        judge_ax.plot([r["sigma"] for r in judged], [r["judge_recognisable"] for r in judged], "o-", color="C1")
        judge_ax.set(ylabel="digit judge: share recognisable", title="digit judge, same seeds")
    recorded = report["model"].get("recorded_two_step_sigma")
    for axis in axes[0]:
        if recorded is not None:
            axis.axvline(recorded, color="grey", ls=":", label=f"recorded {recorded:g}")
            axis.legend()
        axis.set(xscale="log", xlabel="intermediate sigma of the two-step sampler")
        axis.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="zoo entry name, model folder or RUN_DIR/final")
    parser.add_argument("--ref", required=True, help="FID reference statistics (.npz)")
    parser.add_argument("--sigmas", required=True, help="comma-separated intermediate sigmas, e.g. 0.4,0.821,1.5")
    parser.add_argument("--num", type=int, default=2000, help="generated images per sigma (seeds 0..num-1)")
    parser.add_argument("--json", default=None, help="default: benchmarks/results/two_step_sigma_MODELNAME.json")
    parser.add_argument("--png", default=None, help="default: next to the JSON")
    parser.add_argument("--no-judge", action="store_true", help="no digit-judge scores (32x32x1 models)")
    args = parser.parse_args(argv)
    try:
        sigmas = parse_sigmas(args.sigmas)
    except ValueError as e:
        parser.error(str(e))
    if args.num < 2:
        parser.error(f"--num must be >= 2 (FID needs a covariance), got {args.num}")
    if not Path(args.ref).is_file():
        parser.error(f"--ref {args.ref}: no such statistics file")

    from keras_ict.digit_judge import IMAGE_SHAPE, DigitJudge, judge_model
    from keras_ict.evaluation import compute_fid, metric_name
    from keras_ict.files import sha256_file
    from keras_ict.zoo import _resolve, from_preset

    try:
        folder = _resolve(args.model)
        model = from_preset(folder)
    except (FileNotFoundError, ValueError) as e:
        parser.error(f"--model {args.model}: {e}")
    try:
        check_sigmas(sigmas, model.sigma_min, model.sigma_max)
    except ValueError as e:
        parser.error(str(e))
    name = Path(folder).resolve().name if Path(folder).resolve().name != "final" else Path(folder).resolve().parent.name
    json_path = Path(args.json or HERE / "results" / f"two_step_sigma_{name}.json")
    png_path = Path(args.png or json_path.with_suffix(".png"))
    key = {"weights_sha256": sha256_file(Path(folder) / "model.weights.h5"), "ref_sha256": sha256_file(args.ref),
           "num": args.num}
    earlier = earlier_report(json_path, key)
    rows = earlier.get("rows", []) if earlier else []
    # The sigma the weights were trained and first recorded with: a later call on the same weights published with
    # a searched sigma keeps it, so the search still compares against the recipe's own value.
    recorded = (model.sampling.get("sigmas_2step") or [None, None])[-1]
    if earlier and earlier.get("model", {}).get("recorded_two_step_sigma") is not None:
        recorded = earlier["model"]["recorded_two_step_sigma"]
    report = {
        "model": {"name": name, "folder": repo_relative(folder), "recorded_two_step_sigma": recorded},
        "key": key,
        "metric": metric_name(args.num, 2),
        "protocol": {"seeds": f"0-{args.num - 1}", "ref": repo_relative(args.ref), "sigma_max": model.sigma_max,
                     "command": "python benchmarks/two_step_sigma.py " + " ".join(sys.argv[1:] if argv is None else argv)},
        "versions": versions(),
        "rows": rows,
    }
    judge = None
    if not args.no_judge and tuple(int(v) for v in model.image_shape) == IMAGE_SHAPE:
        judge = DigitJudge()
    done = {round(r["sigma"], 9): r for r in rows}
    for sigma in sigmas:
        row = done.get(round(sigma, 9))
        if row is None:
            start = time.monotonic()
            result = compute_fid(model, args.ref, num=args.num, sigmas=[model.sigma_max, sigma], progress=False)
            row = {"sigma": sigma, "fid": round(result["fid"], 4), "wall_s": round(time.monotonic() - start, 1),
                   "backend": result["backend"]}
            report["rows"].append(row)
            print(f"sigma {sigma:g}: {report['metric']} {result['fid']:.2f}", flush=True)
        if judge is not None and "judge_recognisable" not in row:  # rows of an earlier call get their judge scores
            row.update(judge_columns(judge_model(model, judge, num=args.num, sigmas=[model.sigma_max, sigma])))
            print(f"sigma {sigma:g}: " + ", ".join(f"{k} {row[k]:.3f}" for k in JUDGE_COLUMNS if k in row), flush=True)
        report["rows"].sort(key=lambda r: r["sigma"])
        report["best"] = best_row(report["rows"])
        write_json(json_path, report)  # after every sigma: an interrupted search keeps what it scored
    report["best"] = best_row(report["rows"])
    write_json(json_path, report)
    plot(report, png_path)
    print(table(report))
    print(f"wrote {repo_relative(json_path)} and {repo_relative(png_path)}")


if __name__ == "__main__":
    main()
