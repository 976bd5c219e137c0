"""The table and plot of the search-vs-random study (issue 15) from a finished `run.sh` folder.

    python results/search_vs_random/report.py OUT [DEST]      (DEST default: this folder)

Reads OUT/eval/*.json (mIoU of every trained network per seed and test set), OUT/bench/<network>.jsonl (measured
latency of the hand-trained networks), OUT/bench/<space>-band.jsonl (each searched network timed beside its
random and NNI architectures, in turns: band_check.py), OUT/random_*_seed*/trials.csv and OUT/nni_*/trials.csv (the trials and
their table or measured latency), and writes into DEST:

- ``networks.csv``: one row per trained network and seed (group, space, params, GMACs, latency by the table
  where there is one, measured latency, the latency ratio to the searched network measured when a random
  architecture was selected, mIoU on each test set);
- ``table.md``: per network the mIoU mean ± std over the seeds beside its measured FPS, per group the random
  architectures' spread, how many random architectures each searched network beats, and the band check: each
  random architecture's measured latency against its searched network's, timed side by side;
- ``plot.png``: mIoU (mean ± std over seeds) against measured FPS, one panel per test set;
- copies of the small outputs of OUT (trial tables, summaries, best/searched architectures, eval and bench rows).
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import sys
from pathlib import Path

#: the hand-trained networks of run.sh step 4 (``nni-<tuner>-best`` for any tuner), in the table's order
ORDER = ("fasterseg-student", "sparsemask", "nni-", "lraspp-mobilenetv3", "unet-mobilenetv2")
TEST_SETS = ("synthetic", "fixture")


def _eval_miou(out: Path, name: str, seed: int, test_set: str) -> float | None:
    path = out / "eval" / f"{name}_seed{seed}_{test_set}.json"
    return json.loads(path.read_text())["miou"] if path.is_file() else None


def _bench(out: Path, name: str) -> dict | None:
    path = out / "bench" / f"{name}.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[-1] if rows else None


def band_checks(out: Path, space: str) -> list[Path]:
    """The band checks of a space (band_check.py): ``bench/<space>-band.jsonl`` (all networks in one run, in
    turns; the one whose latencies the table uses), then ``bench/<space>-band-*.jsonl`` (e.g. pairs)."""
    first = out / "bench" / f"{space}-band.jsonl"
    return ([first] if first.is_file() else []) + sorted((out / "bench").glob(f"{space}-band-*.jsonl"))


def band_latency(out: Path, space: str, path: Path | None = None) -> tuple[float, dict[str, dict]] | None:
    """(the searched network's median ms, {label: row}) of a band check (default ``bench/<space>-band.jsonl``),
    whose first row is the searched network; each row's ``ratio`` is to the searched network of its own run."""
    path = path or out / "bench" / f"{space}-band.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:  # rows written by `terralite bench` (the first pass) carry no ratio
        r.setdefault("ratio", r["latency_ms_median"] / rows[0]["latency_ms_median"])
    return rows[0]["latency_ms_median"], {r["model"]: r for r in rows[1:]}


def _seeds(out: Path) -> list[int]:
    """The training seeds of the study: those of its evaluations and of its random runs."""
    names = [p.stem for p in (out / "eval").glob("*_seed*_synthetic.json")] + [p.name for p in out.glob("random_*_seed*")]
    return sorted({int(name.split("_seed")[1].split("_")[0]) for name in names})


def _group(name: str) -> str:
    if name == "fasterseg-student":
        return "searched (FasterSeg, differentiable)"
    if name == "sparsemask":
        return "searched (SparseMask, differentiable)"
    if name.startswith("nni-"):
        return f"NNI {name.split('-')[1].upper()} best (FasterSeg space)"
    return "hand-designed"


def hand_trained_rows(out: Path, seeds: list[int]) -> list[dict]:
    """Every network with its own bench file (``bench/<name>.jsonl``) per seed."""
    names = [p.stem for p in (out / "bench").glob("*.jsonl") if "-band" not in p.stem]
    names.sort(key=lambda n: (next((i for i, prefix in enumerate(ORDER) if n.startswith(prefix)), len(ORDER)), n))
    rows = []
    for name in names:
        bench = _bench(out, name)
        if bench is None:  # an empty file: the timing was interrupted
            continue
        for seed in seeds:
            rows.append({"network": name, "group": _group(name), "seed": seed, "params_m": bench["params_m"],
                         "gmacs": bench["gmacs"], "lut_ms": None, "measured_ms": bench["latency_ms_median"],
                         "measured_p10_ms": bench["latency_ms_p10"], "measured_p90_ms": bench["latency_ms_p90"],
                         "selection_ratio": None, **{f"miou_{t}": _eval_miou(out, name, seed, t) for t in TEST_SETS}})
    return rows


def random_rows(out: Path, seeds: list[int]) -> list[dict]:
    """Every trained random architecture per seed. Measured latency: the side-by-side band run's where there is one,
    else the trial's own measurement (FasterSeg: ``--measure``; SparseMask: the band's)."""
    rows = []
    for space in ("fasterseg", "sparsemask"):
        band = band_latency(out, space)
        for seed in seeds:
            table = out / f"random_{space}_seed{seed}" / "trials.csv"
            if not table.is_file():
                continue
            with open(table) as f:
                for t in csv.DictReader(f):
                    if t["status"] != "trained":
                        continue
                    lut = space == "fasterseg"
                    measured = float(t["measured_ms"]) if lut and t["measured_ms"] else float(t["latency_ms"])
                    side_by_side = band and band[1].get(f"{space}-{t['trial']}")
                    name = f"random-{space}-{t['trial'].split('-')[1]}"
                    rows.append({"network": name, "group": f"random ({space} space, latency-matched)", "seed": seed,
                                 "params_m": int(t["params"]) / 1e6, "gmacs": float(t["gmacs"]),
                                 "lut_ms": float(t["latency_ms"]) if lut else None,
                                 "measured_ms": side_by_side["latency_ms_median"] if side_by_side else measured,
                                 "measured_p10_ms": side_by_side and side_by_side["latency_ms_p10"],
                                 "measured_p90_ms": side_by_side and side_by_side["latency_ms_p90"],
                                 # its latency over the searched network's, timed side by side when it was drawn
                                 "selection_ratio": float(t["measured_ratio"]) if t.get("measured_ratio") else None,
                                 "miou_synthetic": float(t["miou"]),
                                 "miou_fixture": _eval_miou(out, name, seed, "fixture")})
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def per_network(rows: list[dict]) -> list[dict]:
    """One entry per network: mIoU mean ± std over its seeds per test set, its latency (mean over the seeds'
    measurements)."""
    names = list(dict.fromkeys(r["network"] for r in rows))
    out = []
    for name in names:
        mine = [r for r in rows if r["network"] == name]
        entry = {k: mine[0][k] for k in ("network", "group", "params_m", "gmacs", "lut_ms")}
        entry["measured_ms"] = statistics.fmean(r["measured_ms"] for r in mine)
        entry["seeds"] = len(mine)
        for t in TEST_SETS:
            entry[f"miou_{t}"], entry[f"miou_{t}_std"] = _mean_std([r[f"miou_{t}"] for r in mine])
        out.append(entry)
    return out


def _fmt(v, digits=4) -> str:
    return "" if v is None or v != v else f"{v:.{digits}f}"


def markdown(networks: list[dict]) -> str:
    lines = ["| network | group | params (M) | GMACs @1024 | table (ms) | measured (ms) | FPS | mIoU synthetic (mean ± std) | mIoU fixture (mean ± std) | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in networks:
        lines.append(f"| {n['network']} | {n['group']} | {n['params_m']:.3f} | {n['gmacs']:.2f} | {_fmt(n['lut_ms'], 1)} | "
                     f"{n['measured_ms']:.1f} | {1000 / n['measured_ms']:.2f} | "
                     + " | ".join(f"{_fmt(n[f'miou_{t}'])} ± {_fmt(n[f'miou_{t}_std'])}" for t in TEST_SETS)
                     + f" | {n['seeds']} |")
    lines += ["", "Random architectures against each searched network (mean over seeds; synthetic / fixture test set):", ""]
    nni_best = [n["network"] for n in networks if n["network"].startswith("nni-")]
    for space, searched in (("fasterseg", ("fasterseg-student", *nni_best)), ("sparsemask", ("sparsemask",))):
        pool = [n for n in networks if n["network"].startswith(f"random-{space}-")]
        if not pool:
            continue
        for t in TEST_SETS:
            values = sorted(n[f"miou_{t}"] for n in pool if n[f"miou_{t}"] == n[f"miou_{t}"])
            if not values:
                continue
            lines.append(f"- {space} random, {t}: {len(values)} architectures, mIoU min {values[0]:.4f}, median "
                         f"{statistics.median(values):.4f}, max {values[-1]:.4f}, mean {statistics.fmean(values):.4f}")
            for name in searched:
                match = [n for n in networks if n["network"] == name]
                if match and match[0][f"miou_{t}"] == match[0][f"miou_{t}"]:
                    m = match[0][f"miou_{t}"]
                    beaten = sum(v < m for v in values)
                    lines.append(f"  - {name}: {m:.4f}, better than {beaten} of {len(values)}")
    return "\n".join(lines) + "\n"


def _selection_ratios(out: Path, space: str) -> dict[str, float]:
    """{trial: latency ratio to the searched network} measured when the first seed's random run selected it."""
    runs = sorted(out.glob(f"random_{space}_seed*/trials.csv"))
    if not runs:
        return {}
    with open(runs[0]) as f:
        return {t["trial"]: float(t["measured_ratio"]) for t in csv.DictReader(f)
                if t["status"] == "trained" and t.get("measured_ratio")}


def band_check(out: Path, band: float = 0.05) -> str:
    """Each random (and NNI) architecture's measured latency as a ratio to its searched network's, per check."""
    lines = []
    for space in ("fasterseg", "sparsemask"):
        selection = _selection_ratios(out, space)
        if selection:
            lines.append(f"- {space} random (when selected: `search random --measured-band`, the searched network beside "
                         f"each, one run per pair): {sum(abs(v - 1) <= band for v in selection.values())} of "
                         f"{len(selection)} within ±{band:.0%}; ratios "
                         + ", ".join(f"{k.rsplit('-', 1)[1]} {v:.3f}" for k, v in sorted(selection.items())))
        for path in band_checks(out, space):
            target, rows = band_latency(out, space, path)
            first = next(iter(rows.values()), {})
            how = f"{path.name}: {first.get('timing', 'all in one run, in turns')}, {first.get('iters')} calls each"
            for kind in ("random", "nni"):
                mine = {k: r["ratio"] for k, r in rows.items() if k.startswith(f"{space}-{kind}-")}
                if not mine:
                    continue
                inside = sum(abs(v - 1) <= band for v in mine.values())
                within10 = sum(abs(v - 1) <= 2 * band for v in mine.values())
                lines.append(f"- {space} {kind} ({how}): searched network {target:.1f} ms; {inside} of {len(mine)} within "
                             f"±{band:.0%} by measurement, {within10} within ±{2 * band:.0%}; ratios "
                             + ", ".join(f"{k.rsplit('-', 1)[1]} {v:.3f}" for k, v in sorted(mine.items())))
    return "\n".join(lines)


def plot(networks: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    style = {"random (fasterseg": ("o", "tab:blue", 25), "random (sparsemask": ("o", "tab:orange", 25),
             "searched (FasterSeg": ("*", "tab:blue", 220), "searched (SparseMask": ("*", "tab:orange", 220),
             "NNI": ("D", "tab:green", 70), "hand-designed": ("s", "black", 60)}
    fig, axes = plt.subplots(1, len(TEST_SETS), figsize=(13, 5.2))
    for ax, t in zip(axes, TEST_SETS):
        seen = set()
        for n in networks:
            marker, color, size = next(v for k, v in style.items() if n["group"].startswith(k))
            if n[f"miou_{t}"] != n[f"miou_{t}"]:
                continue
            label = n["group"] if n["group"] not in seen else None
            seen.add(n["group"])
            fps = 1000 / n["measured_ms"]
            ax.errorbar(fps, n[f"miou_{t}"], yerr=n[f"miou_{t}_std"], fmt="none", ecolor=color, alpha=0.5, capsize=2)
            ax.scatter(fps, n[f"miou_{t}"], marker=marker, color=color, s=size, label=label, zorder=3,
                       edgecolors="black" if size > 100 else "none", linewidths=0.6)
            if not n["network"].startswith("random-"):
                ax.annotate(n["network"], (fps, n[f"miou_{t}"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.set_xlabel("measured FPS (ONNX Runtime fp32, CPU, 1x3x1024x1024)")
        ax.set_ylabel(f"mIoU, {t} test set (mean ± std over seeds)")
        ax.set_title(f"{t} test set")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("Searched vs latency-matched random vs hand-designed, one recipe and budget (issue 15)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def copy_outputs(out: Path, dest: Path) -> None:
    """The small files of the study (not checkpoints, data or NNI's experiment folders)."""
    for run in sorted(list(out.glob("random_*_seed*")) + list(out.glob("nni_*"))):
        target = dest / run.name
        target.mkdir(parents=True, exist_ok=True)
        for name in ("trials.csv", "trials.md", "trials.png", "summary.json", "best.json", "search.json", "latency_cache.json",
                     "side_by_side_cache.json"):
            if (run / name).is_file():
                shutil.copy2(run / name, target / name)
        for arch in sorted(run.glob("trials/*/arch.json")):
            (target / "archs").mkdir(exist_ok=True)
            shutil.copy2(arch, target / "archs" / f"{arch.parent.name}.json")
    for search, names in (("search_sparsemask", ("arch.json", "log.csv", "connectivity.png", "config.yaml")),
                          ("search_fasterseg", ("student.json", "teacher.json", "log.csv", "config.yaml"))):
        if (out / search).is_dir():
            (dest / search).mkdir(parents=True, exist_ok=True)
            for name in names:
                if (out / search / name).is_file():
                    shutil.copy2(out / search / name, dest / search / name)
    for folder in ("eval", "bench"):
        if (out / folder).is_dir():
            shutil.copytree(out / folder, dest / folder, dirs_exist_ok=True)


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    dest = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    seeds = _seeds(out)
    if not seeds:
        print(f"{out} holds no trained networks (eval/*_seed*_synthetic.json, random_*_seed*/): run run.sh first", file=sys.stderr)
        return 2
    rows = hand_trained_rows(out, seeds) + random_rows(out, seeds)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "networks.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    networks = per_network(rows)
    check = band_check(out)
    (dest / "table.md").write_text(markdown(networks) + (f"\nBand check (ONNX Runtime fp32 CPU, band_check.py, in turns "
                                                         f"of five calls):\n\n{check}\n" if check else ""))
    plot(networks, dest / "plot.png")
    if dest.resolve() != out.resolve():
        copy_outputs(out, dest)
    print(f"wrote {dest / 'networks.csv'}, {dest / 'table.md'}, {dest / 'plot.png'} ({len(rows)} rows, seeds {seeds})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
