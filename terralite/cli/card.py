"""``terralite card CKPT``: a Markdown model card of a checkpoint."""

from __future__ import annotations

HELP = "print a Markdown model card of a checkpoint (spec, params/GMACs, data, recipe, metrics, versions)"
DESCRIPTION = (
    "Describe CKPT (a checkpoint of terralite train, prune or distill) as Markdown: the network (spec, parameters "
    "and GMACs at --size), its training data and recipe (from the checkpoint's config), its metrics and the "
    "library versions it was trained with. Printed, or written to --out."
)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="TerraLite checkpoint (.pt)")
    parser.add_argument("--size", type=int, default=1024, metavar="PX", help="input size for params/GMACs (default 1024)")
    parser.add_argument("--out", metavar="FILE", help="write the card to FILE (e.g. MODEL_CARD.md) instead of printing it")


def run(args) -> int:
    from pathlib import Path

    from terralite.atomic import ensure_parent, write_text_atomic
    from terralite.benchmark.model_card import model_card
    from terralite.errors import TerraLiteError

    if args.out:
        ensure_parent(args.out)
        if Path(args.out).resolve() == Path(args.checkpoint).resolve():
            raise TerraLiteError(f"--out {args.out} is the checkpoint itself; choose another file for the card")
    card = model_card(args.checkpoint, args.size)
    if args.out:
        write_text_atomic(args.out, card)
        print(f"wrote {args.out}")
    else:
        print(card, end="")
    return 0
