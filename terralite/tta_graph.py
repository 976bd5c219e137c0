"""Test-time augmentation inside an ONNX graph: the views, the network passes and the merge all run in the runtime.

:func:`tta_graph` turns a network graph ``input (B, C, H, W) -> logits (B, K, H, W)`` into one graph with the
same input and output that computes :func:`terralite.tta.tta_forward`'s summed logits: each view is made by
``Slice`` (a flip: step -1 on an axis) and ``Transpose`` (a quarter turn), the network's nodes are repeated once
per view (weights are shared: initializers are not copied), each output is turned back and the views are summed
with ``Sum``. ONNX Runtime then runs flips, passes and merge on its own threads, so TTA costs its passes and
nothing around them (torch ops around a runtime call ran single-threaded, or fought over the cores with
ONNX Runtime's pool).

``hflip-batched`` concatenates both views on the batch axis and runs the network once on ``2B`` images; the
network graph must accept that batch (a dynamic batch, or one exported at ``2B``: pass ``network_batch``).

When the network ends in a bilinear (or bicubic) ``Resize`` to the input size — most segmentation networks
predict at 1/4 or 1/8 and upsample — the flips are undone and the views summed *before* that resize, which then
runs once: a linear resize with symmetric coordinates commutes with flips and with the sum, so the logits are the
same (up to float rounding) and the merge costs a few low-resolution maps instead of one full-resolution resize,
flip and sum per view. Quarter turns (``d4``) keep the merge at full resolution, and ``hflip-batched`` its one
batched resize.
"""

from __future__ import annotations

from terralite.errors import TerraLiteError
from terralite.tta import check_tta_mode, transforms

GRAPH_TTA_MODES = ("none", "hflip", "flips", "d4", "hflip-batched")

_INT64_MIN = -(2**63)
#: Resize coordinate modes under which resizing commutes with a flip (sample positions mirror each other).
_SYMMETRIC_RESIZE = ("half_pixel", "pytorch_half_pixel", "align_corners")


def tta_graph(proto, mode: str):
    """A copy of the ONNX ``ModelProto`` ``proto`` that computes the summed TTA logits of ``mode``.

    ``proto``'s graph has one image input and one logits output (more outputs are dropped). For
    ``hflip-batched``, ``proto`` is the network at batch ``2B`` (or dynamic) and the returned graph takes ``B``.
    """
    import onnx
    from onnx import helper

    if mode not in GRAPH_TTA_MODES:
        check_tta_mode(mode)  # the clear message for unknown modes
    if mode == "none":
        return proto
    graph = proto.graph
    constants = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise TerraLiteError(f"TTA needs a graph with one image input, this one has {[i.name for i in inputs]}")
    x, y = inputs[0].name, graph.output[0].name
    nodes: list = [helper.make_node("Constant", [], ["tta/neg1"], value=helper.make_tensor("v", onnx.TensorProto.INT64, [1], [-1])),
                   helper.make_node("Constant", [], ["tta/min"], value=helper.make_tensor("v", onnx.TensorProto.INT64, [1], [_INT64_MIN]))]
    for axis in (2, 3):
        nodes.append(helper.make_node("Constant", [], [f"tta/axis{axis}"], value=helper.make_tensor("v", onnx.TensorProto.INT64, [1], [axis])))

    def flip(name: str, axis: int, out: str) -> str:
        nodes.append(helper.make_node("Slice", [name, "tta/neg1", "tta/min", f"tta/axis{axis}", "tta/neg1"], [out]))
        return out

    def transpose(name: str, out: str) -> str:
        nodes.append(helper.make_node("Transpose", [name], [out], perm=[0, 1, 3, 2]))
        return out

    def view(name: str, k: int, hflip: bool, tag: str) -> str:
        # torch: rot90(flip(x, -1) if hflip else x, k, dims=(-2, -1)); one quarter turn = transpose(flip(., W))
        if hflip:
            name = flip(name, 3, f"{tag}/hflip")
        for step in range(k % 4):
            name = transpose(flip(name, 3, f"{tag}/rot{step}/flip"), f"{tag}/rot{step}")
        return name

    def unview(name: str, k: int, hflip: bool, tag: str) -> str:
        # the inverse: k quarter turns back (one back = flip(transpose(.), W)), then the flip
        for step in range(k % 4):
            name = flip(transpose(name, f"{tag}/unrot{step}/t"), 3, f"{tag}/unrot{step}")
        return flip(name, 3, f"{tag}/unflip") if hflip else name

    # not for hflip-batched: its resize's sizes carry the doubled batch (the one resize is batched anyway)
    final_resize = _flip_equivariant_final_resize(graph, y) if mode in ("hflip", "flips") else None
    body = [n for n in graph.node if n is not final_resize]
    merged = final_resize.input[0] if final_resize is not None else y  # the tensor the views are summed at

    def network(source: str, tag: str) -> dict[str, str]:
        # one copy of the network's nodes (the final resize left out when it runs once after the merge), its
        # intermediate names prefixed with tag (weights shared); returns the renaming
        rename = {x: source}
        for node in body:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = f"{tag}/{node.name}" if node.name else ""
            copy.input[:] = [rename.get(i, i) for i in node.input]
            for index, out in enumerate(node.output):
                if out:
                    rename[out] = f"{tag}/{out}"
                    copy.output[index] = rename[out]
            nodes.append(copy)
        return rename

    if mode == "hflip-batched":
        nodes.append(helper.make_node("Concat", [x, flip(x, 3, "b/hflip")], ["b/both"], axis=0))
        both = network("b/both", "b")[y]
        # two equal halves: opset 18 names their number, earlier opsets split equally by default
        extra = {"num_outputs": 2} if _opset(proto) >= 18 else {}
        nodes.append(helper.make_node("Split", [both], ["b/view0", "b/view1"], axis=0, **extra))
        outputs = ["b/view0", flip("b/view1", 3, "b/unflip")]
    else:
        renames = [network(view(x, k, hflip, f"v{index}"), f"v{index}") for index, (k, hflip) in enumerate(transforms(mode))]
        # k = 0 or 2 (a flip of both axes) when the merge is before a resize
        outputs = [unview(rename[merged], k, hflip, f"v{index}")
                   for index, (rename, (k, hflip)) in enumerate(zip(renames, transforms(mode)))]
    if final_resize is None:
        nodes.append(helper.make_node("Sum", outputs, [y]))
    else:  # sum at low resolution, then the network's own resize, once (its sizes/scales from the first copy)
        nodes.append(helper.make_node("Sum", outputs, ["tta/merged"]))
        resize = onnx.NodeProto()
        resize.CopyFrom(final_resize)
        resize.input[:] = ["tta/merged", *[renames[0].get(i, i) if i else i for i in final_resize.input[1:]]]
        resize.output[:] = [y]
        nodes.append(resize)
    image = onnx.ValueInfoProto()
    image.CopyFrom(inputs[0])
    if mode == "hflip-batched":  # the graph takes B images; the network inside runs on 2B
        batch = image.type.tensor_type.shape.dim[0]
        if batch.dim_value:
            if batch.dim_value % 2:
                raise TerraLiteError(f"hflip-batched needs the network at an even batch (both views), this graph has batch {batch.dim_value}")
            batch.dim_value //= 2
    new_graph = helper.make_graph(nodes, f"{graph.name}_tta_{mode}", [image], [graph.output[0]], list(graph.initializer),
                                  value_info=[])
    model = helper.make_model(new_graph, opset_imports=list(proto.opset_import), producer_name=proto.producer_name or "terralite")
    model.ir_version = proto.ir_version
    model.metadata_props.extend(proto.metadata_props)
    if mode == "hflip-batched":  # the graph returns B images; the network inside ran on 2B
        dims = model.graph.output[0].type.tensor_type.shape.dim
        if dims:
            dims[0].CopyFrom(image.type.tensor_type.shape.dim[0])
    return model


def _flip_equivariant_final_resize(graph, output: str):
    """The ``Resize`` node that produces ``output`` when it commutes with flips (linear or cubic, symmetric
    coordinates, no antialiasing, all axes), else None."""
    node = next((n for n in graph.node if output in n.output), None)
    if node is None or node.op_type != "Resize" or node.domain not in ("", "ai.onnx"):
        return None
    attrs = {a.name: a for a in node.attribute}

    def text(name: str, default: str) -> str:
        return attrs[name].s.decode() if name in attrs else default

    if text("mode", "nearest") not in ("linear", "cubic"):
        return None
    if text("coordinate_transformation_mode", "half_pixel") not in _SYMMETRIC_RESIZE:
        return None
    if "antialias" in attrs and attrs["antialias"].i:
        return None
    if "axes" in attrs or text("keep_aspect_ratio_policy", "stretch") != "stretch":
        return None
    return node


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 18)


def tta_session_bytes(path, mode: str) -> bytes | str:
    """What ONNX Runtime loads to run the ONNX file ``path`` with TTA ``mode``: the file itself for ``none``,
    else the serialised TTA graph (:func:`tta_graph`)."""
    if mode == "none":
        return str(path)
    import onnx

    return tta_graph(onnx.load(str(path)), mode).SerializeToString()
