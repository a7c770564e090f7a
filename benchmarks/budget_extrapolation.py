"""How many images (and CPU hours) a run would need to reach an FID target, read from its own learning curve.

    python benchmarks/budget_extrapolation.py --run ~/.cache/keras_ict/runs/zoo/mnist-long \
        --target fid2k_1step=10 --target fid2k_2step=6 --json benchmarks/results/budget_mnist_long.json

For each target metric, the run's logged points (fid.csv or judge.csv, read as `recipe_study.read_run` reads them)
from `--from-images` on are fitted with a power law, log FID = a + b log images (least squares); where the curve
still falls (b < 0) the fit is extended to the target: images = exp((log target - a) / b), and CPU hours at the
run's median training speed (FID time not included). Writes JSON (fit, points used, the extrapolation) and a
PNG of the points and fitted lines against images seen (log-log).

Read the result as an order of magnitude, not a promise: a power law fitted inside one run also carries the
run's own schedule (the curriculum's N and the EMA change along it), curves flatten, and FID-2k (the training-time
metric) is biased upwards against the FID-10k of the targets.
"""

import argparse
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import repo_relative, versions, write_json  # noqa: E402

MAX_IMAGES = 1e15  # beyond this a fitted power law is reported as no extrapolation (and exp() would overflow)


def fit_power_law(images, values):
    """(a, b) of log(value) = a + b log(images), least squares over >= 2 points with distinct images."""
    if len(images) != len(values) or len(images) < 2:
        raise ValueError(f"a power law needs at least 2 points, got {len(images)}")
    if len(set(images)) < 2 or min(images) <= 0 or min(values) <= 0:
        raise ValueError("a power law needs positive values at two or more distinct image counts")
    xs, ys = [math.log(v) for v in images], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def extrapolate(points, metric, target, from_images=0, img_per_s=None):
    """The fit of one metric's points and the images / hours at which it reaches `target` (None where it does
    not fall, or is already there)."""
    used = [(p["images"], p[metric]) for p in points if metric in p and p["images"] >= from_images]
    if len(used) < 2:
        return {"metric": metric, "target": target, "points": used,
                "note": f"{len(used)} point(s) of {metric} from {from_images} images on: at least 2 are needed"}
    a, b = fit_power_law(*zip(*used))
    result = {"metric": metric, "target": target, "points": used, "fit": {"a": round(a, 6), "b": round(b, 6)}}
    last_images, last_value = used[-1]
    if last_value <= target:
        result["note"] = f"reached: {metric} {last_value:g} <= {target:g} at {last_images} images"
        return result
    if b >= 0:
        result["note"] = f"not falling (exponent {b:.3f} >= 0): no extrapolation"
        return result
    log_images = (math.log(target) - a) / b
    if log_images > math.log(MAX_IMAGES):  # a curve that barely falls: the power law's answer means nothing
        result["note"] = (f"falls too slowly (exponent {b:.4f}): the fit reaches {target:g} only beyond "
                          f"{MAX_IMAGES:.0e} images; no usable extrapolation")
        return result
    images = math.exp(log_images)
    result.update(images=round(images), times_last=round(images / last_images, 1))
    if img_per_s:
        result["cpu_hours"] = round(images / img_per_s / 3600, 1)
    return result


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in report["targets"]:
        if not row["points"]:
            continue
        xs, ys = zip(*row["points"])
        line = ax.plot(xs, ys, "o", label=f"{row['metric']} (logged)")[0]
        if "fit" in row:
            end = max(row.get("images", 0), xs[-1])
            grid = [xs[0] * (end / xs[0]) ** (i / 50) for i in range(51)]
            ax.plot(grid, [math.exp(row["fit"]["a"]) * g ** row["fit"]["b"] for g in grid], "--",
                    color=line.get_color(), label=f"{row['metric']} power law, exponent {row['fit']['b']:.2f}")
        ax.axhline(row["target"], color=line.get_color(), lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="images seen", ylabel="FID (training-time, small sample)",
           title=f"Extrapolated budget: {report['run']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _target(text):
    metric, sep, value = text.partition("=")
    try:
        if not sep or not metric or float(value) <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target must be METRIC=VALUE with VALUE > 0, got {text!r}") from None
    return metric, float(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder with fid.csv (or judge.csv) and log.csv")
    parser.add_argument("--target", type=_target, action="append", required=True, metavar="METRIC=VALUE",
                        help="e.g. fid2k_1step=10 (repeatable)")
    parser.add_argument("--from-images", type=int, default=0, help="fit only points at or after this many images")
    parser.add_argument("--json", required=True)
    parser.add_argument("--png", help="default: the JSON's name with .png")
    args = parser.parse_args(argv)
    run = Path(args.run)
    if not (run / "config.json").is_file():
        parser.error(f"{run} is not a run folder (config.json is missing)")
    import recipe_study

    row = recipe_study.read_run(run)
    report = {
        "run": repo_relative(run),
        "versions": versions(),
        "steps": row["steps"],
        "images_seen": row["images_seen"],
        "img_per_s_median": row["img_per_s_median"],
        "from_images": args.from_images,
        "targets": [extrapolate(row["points"], metric, value, args.from_images, row["img_per_s_median"])
                    for metric, value in args.target],
    }
    write_json(args.json, report)
    plot(report, args.png or str(Path(args.json).with_suffix(".png")))
    for t in report["targets"]:
        where = (f"{t['images']:,} images ({t['times_last']}x the last point), {t.get('cpu_hours', '?')} CPU hours"
                 if "images" in t else t.get("note", ""))
        print(f"{t['metric']} -> {t['target']:g}: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
