"""Post-training static int8 quantisation with ONNX Runtime (QDQ format), calibrated on real tiles.

Pipeline: TerraLite checkpoint → fp32 ONNX (dynamic H, W; the checkpoint's spec, normalisation and class
names in ``metadata_props``) → ``quant_pre_process`` (shape inference + graph optimisation) →
``quantize_static`` with a :class:`TileCalibrationReader` that feeds dataset tiles normalised exactly as
the model was trained → ``MODEL.int8.onnx`` (same metadata). :func:`agreement` then compares fp32 and int8
on a labelled split: share of pixels with the same class, and mIoU of each.

Weights are quantised per output channel by default (one scale per filter: depthwise and 1x1 convolutions
of small networks lose too much with one scale per tensor). Operators of :data:`FLOAT_OPS` stay in float:
an int8 bilinear resize (the decoders' upsampling, the final x2/x4 to the input size) is slower than the
float one on ONNX Runtime's CPU kernels and rounds the logits. So do the convolutions that read the image itself
(:func:`input_convs`: float weights and arithmetic; their input still passes through one quantise/dequantise pair):
an int8 first layer cost a 0.35-mIoU FasterSeg student 0.9 points of pixel agreement with fp32 (98.6 % → 99.5 %
with that one layer in float). :func:`speed_report` puts the measured
int8/fp32 ratio in the report, and where int8 is not :data:`SPEEDUP_TARGET` times faster, the time per
operator type of both graphs (ONNX Runtime's profiler) and the operators that cost the int8 graph most.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terralite.benchmark.onnx_file import read_onnx_file
from terralite.atomic import atomic_path, ensure_parent
from terralite.errors import TerraLiteError
from terralite.onnx_metadata import read_metadata_props, write_onnx_metadata

# Activations uint8 (asymmetric), weights int8: ONNX Runtime's recommendation for x86 CPUs; QDQ is the
# format its CPU kernels fuse into integer convolutions.
ACTIVATION_TYPE = "QUInt8"
WEIGHT_TYPE = "QInt8"
FLOAT_OPS = ("Resize", "Softmax")
"""Operator types left in float32 (inputs dequantised before them)."""
SPEEDUP_TARGET = 1.3
"""int8 should be at least this many times faster than fp32 (median latency); below it the report says why."""
NOT_QUANTISED = {"Cast", "QuantizeLinear", "DequantizeLinear"}


def input_convs(graph) -> list[str]:
    """Names of the ``Conv`` nodes that read the graph's image input directly (kept in float: see the module doc)."""
    constants = {init.name for init in graph.initializer}
    inputs = {i.name for i in graph.input if i.name not in constants}
    return [node.name for node in graph.node if node.op_type == "Conv" and node.name and inputs & set(node.input)]


def _float_convs(int8: Path) -> list[str]:
    """The convolutions of the int8 graph that kept float weights (a quantised one reads them from a DequantizeLinear)."""
    import onnx

    graph = onnx.load(str(int8), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights]


def evenly_spaced(count: int, total: int) -> list[int]:
    """``count`` indices spread over ``range(total)`` (all of them when ``count`` >= ``total``)."""
    if count <= 0 or count >= total:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, count).round()]


def model_sized_crops(image, label, size: tuple[int | None, int | None]) -> list[tuple]:
    """``(image, label, real)`` crops that a model with a fixed input ``size`` = ``(H, W)`` can take (None: any).

    A tile larger than the model's input is cut into a grid of crops of that size covering it (the last row and
    column flush with the tile's edge); a smaller one is padded (image with 0, the normalised mean; label with
    the ignore index, so padding is never scored). A dynamic input takes the tile as it is. Where the last crops
    overlap their neighbours, those pixels are scored twice.
    image: (C, H, W) float tensor; label: (H, W) long tensor; real: (h, w) bool, False on padding.
    """
    import torch

    from terralite.data.large_raster import window_offsets
    from terralite.data.transforms import pad_to_size

    height, width = image.shape[-2:]
    crop_h, crop_w = size[0] or height, size[1] or width
    real = torch.ones(height, width, dtype=torch.bool)
    image, label = pad_to_size(image, label, crop_h, crop_w)
    real = torch.nn.functional.pad(real, (0, image.shape[-1] - width, 0, image.shape[-2] - height), value=False)
    return [(image[:, y:y + crop_h, x:x + crop_w], label[y:y + crop_h, x:x + crop_w], real[y:y + crop_h, x:x + crop_w])
            for y in window_offsets(image.shape[-2], crop_h, crop_h) for x in window_offsets(image.shape[-1], crop_w, crop_w)]


def _calibration_reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class TileCalibrationReader(CalibrationDataReader):
        """Feeds ``indices`` tiles of ``dataset`` (normalised ``(1, C, H, W)`` float32) to the calibrator, each
        cut or padded to the model's fixed input size (:func:`model_sized_crops`) when it has one."""

        def __init__(self, dataset, input_name: str, indices: list[int], size: tuple[int | None, int | None]):
            self.dataset = dataset
            self.input_name = input_name
            self.indices = list(indices)
            self.size = size
            self.position, self.end = 0, len(self.indices)
            self.pending: list = []  # crops of the current tile not served yet

        def __len__(self) -> int:
            return len(self.indices)

        def set_range(self, start_index: int, end_index: int) -> None:
            """Serve tiles ``start_index:end_index`` next (ONNX Runtime's strided calibration)."""
            self.position, self.end = start_index, min(end_index, len(self.indices))

        def get_next(self):
            if not self.pending:
                if self.position >= self.end:
                    return None
                image, label = self.dataset[self.indices[self.position]]
                self.pending = [crop for crop, _, _ in model_sized_crops(image, label, self.size)]
                self.position += 1
            return {self.input_name: self.pending.pop(0).unsqueeze(0).numpy()}

    return TileCalibrationReader


def check_bands(dataset, in_channels: int, model_name: str) -> None:
    """Calibration/evaluation tiles must have the model's band count."""
    if dataset.num_bands != in_channels:
        raise TerraLiteError(
            f"{dataset.root} split {dataset.split!r} gives {dataset.num_bands}-band tiles but {model_name} takes {in_channels} bands; "
            "calibrate on data with the bands the model was trained on (or a checkpoint whose band selection matches)"
        )


def quantize_onnx(fp32: str | Path, out: str | Path, calib_dataset, *, calib_images: int = 32, per_channel: bool = True,
                  float_ops: tuple[str, ...] = FLOAT_OPS) -> Path:
    """Write the int8 QDQ version of ``fp32`` to ``out``, calibrated on ``calib_images`` tiles of ``calib_dataset``;
    operators of ``float_ops`` stay in float.

    The dataset must already apply the model's band selection and normalisation. ``out`` appears only when
    quantisation succeeded (intermediate files live in a temporary folder).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, out = Path(fp32), ensure_parent(out)
    onnx_file = read_onnx_file(fp32)
    input_name = onnx_file.input_name
    check_bands(calib_dataset, onnx_file.channels(), str(fp32))
    indices = evenly_spaced(calib_images, len(calib_dataset))
    reader = _calibration_reader_class()(calib_dataset, input_name, indices, onnx_file.input_dims[2:])
    with tempfile.TemporaryDirectory(prefix="terralite-quant-") as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        import onnx

        pre_graph = onnx.load(str(pre), load_external_data=False).graph
        op_types = {node.op_type for node in pre_graph.node}
        with atomic_path(out) as tmp_out:
            quantize_static(
                str(pre),
                str(tmp_out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                op_types_to_quantize=sorted(op_types - NOT_QUANTISED - set(float_ops)),
                activation_type=getattr(QuantType, ACTIVATION_TYPE),
                weight_type=getattr(QuantType, WEIGHT_TYPE),
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=input_convs(pre_graph),
                # one tile per pass, ranges merged after each: the activations of one tile at a time are held,
                # not those of every calibration tile (CalibMaxIntermediateOutputs would drop data in ORT 1.31)
                extra_options={"CalibStridedMinMax": 1},
            )
            write_onnx_metadata(tmp_out, read_metadata_props(fp32))
    return out


@dataclass
class Agreement:
    """fp32 vs int8 on one split: pixel agreement (share of pixels given the same class) and mIoUs."""

    images: int
    pixel_agreement: float
    miou_fp32: float
    miou_int8: float

    @property
    def miou_difference(self) -> float:
        return self.miou_int8 - self.miou_fp32

    def to_dict(self) -> dict:
        return {"images": self.images, "pixel_agreement": self.pixel_agreement, "miou_fp32": self.miou_fp32,
                "miou_int8": self.miou_int8, "miou_difference": self.miou_difference}


def agreement(fp32: str | Path, int8: str | Path, dataset, num_classes: int, max_images: int = 0) -> Agreement:
    """Run both ONNX models on ``dataset`` tiles (all, or ``max_images`` spread over the split) on the CPU."""
    import onnxruntime as ort
    import torch

    from terralite.data.classes import IGNORE_INDEX
    from terralite.metrics import ConfusionMatrix

    sessions = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path in (fp32, int8)]
    input_name = sessions[0].get_inputs()[0].name
    onnx_file = read_onnx_file(fp32)
    check_bands(dataset, onnx_file.channels(), str(fp32))
    matrices = [ConfusionMatrix(num_classes, IGNORE_INDEX) for _ in sessions]
    same = total = 0
    indices = evenly_spaced(max_images, len(dataset))
    for index in indices:
        for image, label, real in model_sized_crops(*dataset[index], onnx_file.input_dims[2:]):
            preds = [torch.from_numpy(s.run(None, {input_name: image.unsqueeze(0).numpy()})[0]).argmax(1)[0] for s in sessions]
            for matrix, pred in zip(matrices, preds):
                matrix.update(pred, label)
            same += int((preds[0] == preds[1])[real].sum())  # padding does not count as agreement
            total += int(real.sum())
    mious = [m.compute()["miou"] for m in matrices]
    return Agreement(len(indices), same / total, float(mious[0]), float(mious[1]))


def speed_report(fp32_row: dict, int8_row: dict, fp32: str | Path, int8: str | Path, in_channels: int, *,
                 target: float = SPEEDUP_TARGET, profile_runs: int = 3) -> dict:
    """The measured int8 speed-up (median fp32 latency / median int8 latency of the two benchmark rows) and,
    below ``target``, why: milliseconds per operator type of both graphs at the rows' input size and the
    int8 graph's costliest operators with their share of its call (ONNX Runtime's profiler)."""
    from terralite.benchmark.ort_profile import op_time_profile

    size = int8_row["input_size"]
    speedup = fp32_row["latency_ms_median"] / int8_row["latency_ms_median"]
    report = {"input_size": size, "fp32_ms_median": fp32_row["latency_ms_median"], "int8_ms_median": int8_row["latency_ms_median"],
              "iterations": int8_row.get("iters"), "speedup": round(speedup, 3), "target": target, "meets_target": speedup >= target}
    if speedup < target:
        shape = (1, in_channels, size, size)
        profiles = {"fp32": op_time_profile(fp32, shape, runs=profile_runs), "int8": op_time_profile(int8, shape, runs=profile_runs)}
        total = sum(profiles["int8"].values()) or 1.0
        report["op_ms"] = {name: {op: round(ms, 3) for op, ms in prof.items()} for name, prof in profiles.items()}
        report["costliest_int8_ops"] = [{"op": op, "ms": round(ms, 3), "share": round(ms / total, 3)}
                                        for op, ms in list(profiles["int8"].items())[:5]]
    return report


def speed_line(speed: dict) -> str:
    """One line for the terminal: the ratio, and where it misses the target the operators that cost it."""
    line = (f"int8 runs {speed['speedup']:.2f}x as fast as fp32 at {speed['input_size']} px on the CPU "
            f"(median {speed['int8_ms_median']:.1f} vs {speed['fp32_ms_median']:.1f} ms; target {speed['target']}x)")
    if not speed["meets_target"]:
        ops = ", ".join(f"{o['op']} {100 * o['share']:.0f} %" for o in speed["costliest_int8_ops"])
        line += f"; the int8 call's time goes to {ops} (per-op times in the report)"
    return line


@dataclass
class QuantizeOptions:
    """The flags of ``terralite quantize``."""

    source: str = ""  # a TerraLite checkpoint or an ONNX file (exported by terralite export: it carries the normalisation)
    calib: str = ""  # dataset root whose tiles calibrate the activation ranges
    out: str = ""  # MODEL.int8.onnx
    per_channel: bool = True
    calib_images: int = 32
    calib_split: str = "train"
    eval_split: str | None = "val"  # None (or "none"): no agreement check
    eval_images: int = 0  # 0 = the whole split
    tensorrt: str | None = None  # also build a TensorRT int8 engine from the QDQ graph, at this path
    bench_size: int = 1024
    bench_iters: int = 10

    def __post_init__(self) -> None:
        from terralite.compress.training import split_or_none

        self.eval_split = split_or_none(self.eval_split)  # "none" as typed: skip the agreement check


def fp32_path_for(out: Path) -> Path:
    """``model.int8.onnx`` → ``model.fp32.onnx`` (where a checkpoint's fp32 export is written)."""
    name = out.name
    stem = name[: -len(".int8.onnx")] if name.endswith(".int8.onnx") else out.stem
    return out.with_name(f"{stem}.fp32.onnx")


def _source_record(source: Path) -> tuple[dict, object]:
    """``({spec, input, class_names}, module or None)`` of a checkpoint, or of an ONNX file exported by TerraLite."""
    if source.suffix.lower() == ".onnx":
        onnx_file = read_onnx_file(source)
        metadata = onnx_file.metadata
        if not metadata.get("input"):
            raise TerraLiteError(f"{source} carries no TerraLite input normalisation; quantise the checkpoint instead, or export it with terralite export")
        in_channels = onnx_file.channels()
        spec = dict(metadata.get("spec") or {"kind": "onnx", "label": source.stem})
        spec.setdefault("in_channels", in_channels)
        return {"spec": spec, "input": metadata["input"], "class_names": metadata.get("class_names")}, None
    from terralite.checkpoint import load_checkpoint
    from terralite.models import build_model

    ckpt = load_checkpoint(source)
    model = build_model(ckpt["spec"])
    from terralite.models import load_weights

    load_weights(model, ckpt["state_dict"], f"checkpoint {source}")
    return {"spec": ckpt["spec"], "input": ckpt.get("input"), "class_names": ckpt.get("class_names")}, model.eval()


def _bench_size_for(source: Path, requested: int) -> int:
    """The size an ONNX source is timed at: its fixed square input when it has one (it runs at no other; said
    when that is not ``requested``), else ``requested``. A fixed non-square input is timed at neither side."""
    height, width = read_onnx_file(source).input_dims[2:]
    if height is None and width is None:
        return requested
    if height != width:
        raise TerraLiteError(f"{source} has a fixed {width}x{height} input and the benchmark times square inputs; export it "
                             "with --dynamic-size (or square) to quantise it")
    if height != requested:
        print(f"note: {source} has a fixed {height}x{height} input; both models are timed at {height} px, not --bench-size {requested}")
    return height


#: The options every run needs, with the flag that gives each (checked by :func:`quantize_model`).
REQUIRED = {"source": "MODEL", "calib": "--calib", "out": "--out"}


def quantize_model(opts: QuantizeOptions) -> dict:
    """``terralite quantize``: fp32 ONNX (exported from a checkpoint, beside ``out``) → int8 QDQ ONNX, then
    agreement with fp32 on ``eval_split``, an optional TensorRT int8 engine, and benchmark rows in
    ``out``'s folder (``compression_rows.jsonl``). Returns the report (also written as ``<out>.json``).

    Inputs (paths, band counts, TensorRT availability) are checked before anything is written; a failure
    later removes the files this call created.
    """
    from terralite.compress.report import Entry, write_compression_rows
    from terralite.compress.training import check_bench, require_options
    from terralite.atomic import write_text_atomic
    from terralite.data.classes import CLASS_NAMES
    from terralite.engine.evaluate import dataset_for_checkpoint
    from terralite.models import describe

    require_options(opts, REQUIRED)
    from terralite.output_guard import check_output_file, refuse_output_over_inputs

    source, out = Path(opts.source), ensure_parent(check_output_file(opts.out))
    if out.suffix.lower() != ".onnx":
        raise TerraLiteError(f"--out must name an .onnx file (e.g. model.int8.onnx), got {out}")
    refuse_output_over_inputs(out, [source, opts.calib], "--out")
    refuse_output_over_inputs(out.with_name(out.name + ".json"), [source], "--out (its report <out>.json)")
    refuse_output_over_inputs(opts.tensorrt, [source, out], "--tensorrt")
    check_bench(opts.bench_size, opts.bench_iters)
    if opts.calib_images < 1:
        raise TerraLiteError(f"--calib-images must be at least 1, got {opts.calib_images}")
    if opts.tensorrt:
        from terralite.benchmark.tensorrt_engine import require_tensorrt

        try:
            require_tensorrt()
        except TerraLiteError:
            raise TerraLiteError("--tensorrt needs the tensorrt package (pip install 'terralite[tensorrt]' on a machine with an "
                                 "NVIDIA GPU), which is not importable here; drop --tensorrt to quantise for ONNX Runtime only") from None
        ensure_parent(opts.tensorrt)
    record, model = _source_record(source)
    spec = record["spec"]
    bench_size = _bench_size_for(source, opts.bench_size) if model is None else opts.bench_size
    calib_set = dataset_for_checkpoint(record, opts.calib, opts.calib_split)
    eval_set = dataset_for_checkpoint(record, opts.calib, opts.eval_split) if opts.eval_split else None

    created: list[Path] = []
    try:
        if model is not None:
            from terralite.benchmark.export import export_onnx
            from terralite.onnx_metadata import onnx_metadata
            from terralite.predict import default_class_names

            fp32 = fp32_path_for(out)
            export_onnx(model, fp32, 64, spec["in_channels"], dynamic=True)
            created.append(fp32)
            write_onnx_metadata(fp32, onnx_metadata(spec, record["input"], default_class_names(spec["num_classes"], record)))
        else:
            fp32 = source
        quantize_onnx(fp32, out, calib_set, calib_images=opts.calib_images, per_channel=opts.per_channel)
        created.append(out)
        report = {"source": str(source), "fp32_onnx": str(fp32), "int8_onnx": str(out), "per_channel": opts.per_channel,
                  "float_ops": list(FLOAT_OPS), "float_convs": _float_convs(out),
                  "calibration": {"root": opts.calib, "split": opts.calib_split, "tiles": len(evenly_spaced(opts.calib_images, len(calib_set)))},
                  "fp32_bytes": fp32.stat().st_size, "int8_bytes": out.stat().st_size}
        if eval_set is not None:
            report["agreement"] = agreement(fp32, out, eval_set, spec.get("num_classes", len(CLASS_NAMES)), opts.eval_images).to_dict()
            report["agreement"]["split"] = opts.eval_split
        if opts.tensorrt:
            report["tensorrt_engine"] = str(build_int8_engine(out, opts.tensorrt, bench_size, spec["in_channels"]))
            report["tensorrt_input_size"] = bench_size
            created.append(Path(opts.tensorrt))
        scores = report.get("agreement", {})
        name = describe(spec)
        entries = [Entry(name, spec, model=model, onnx=fp32, precision="fp32", miou=scores.get("miou_fp32"), role="fp32"),
                   Entry(f"{name}-int8", spec, model=model, onnx=out, precision="int8", miou=scores.get("miou_int8"), role="int8")]
        rows_file = write_compression_rows(out.parent, entries, bench_size=bench_size, iterations=opts.bench_iters,
                                           eval_split=opts.eval_split)
        from terralite.benchmark.rows import read_rows

        fp32_row, int8_row = read_rows(rows_file)[-2:]  # the two rows just appended
        report["speed"] = speed_report(fp32_row, int8_row, fp32, out, spec["in_channels"])
        report_path = out.with_name(out.name + ".json")
        write_text_atomic(report_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
        created.append(report_path)
        return report
    except BaseException:
        for path in created:
            if path != source:
                path.unlink(missing_ok=True)
        raise


def build_int8_engine(qdq_onnx: str | Path, engine_path: str | Path, size: int, in_channels: int, workspace_gb: float = 4.0) -> Path:
    """Build a TensorRT engine for ``1 x in_channels x size x size`` from an int8 QDQ graph.

    Explicit quantisation: the QDQ nodes carry the calibrated scales, so TensorRT needs no calibrator;
    layers left unquantised may run in fp16. (The benchmark's ``build_engine`` builds fp32/fp16 engines
    from fixed-shape graphs; the QDQ graph has dynamic H, W and needs the int8 flag and a shape profile.)
    """
    from terralite.benchmark.tensorrt_engine import require_tensorrt
    from terralite.atomic import write_bytes_atomic

    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(qdq_onnx).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TerraLiteError(f"TensorRT cannot parse {qdq_onnx}: {errors[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    shape = (1, in_channels, size, size)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, shape, shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TerraLiteError(f"TensorRT failed to build an int8 engine from {qdq_onnx} (see the TensorRT messages above)")
    return write_bytes_atomic(engine_path, bytes(serialized))
