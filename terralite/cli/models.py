"""``terralite models``: the baseline zoo, the registered search spaces and model kinds."""

from __future__ import annotations

HELP = "list the baseline zoo, the search spaces and the model kinds (params/GMACs with --size)"
DESCRIPTION = (
    "List every registry entry: the baselines (a MODEL name for train, profile, bench), the search spaces "
    "(terralite search METHOD) and the model kinds a spec or checkpoint may name. --size PX adds the "
    "parameters and GMACs of each baseline at 1 x C x PX x PX (fvcore; big networks take a while on a CPU) and "
    "the analytic cost of each space's lightest and heaviest architecture."
)


def add_arguments(parser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="list only these baselines / search spaces (default: all)")
    parser.add_argument("--size", type=int, default=None, metavar="PX", help="add params (M) and GMACs at PX x PX (e.g. 1024)")
    parser.add_argument("--in-channels", type=int, default=3, metavar="N", help="input bands for --size (default 3)")
    parser.add_argument("--num-classes", type=int, default=8, metavar="K", help="classes for --size (default 8)")
    parser.add_argument("--json", action="store_true", help="print the catalogue as one JSON object")


def _cost(entry: dict) -> str:
    return f"{entry['params_m']:8.3f} M {entry['gmacs']:9.2f} GMACs" if "params_m" in entry else ""


def run(args) -> int:
    import json

    from terralite.api import model_catalogue

    catalogue = model_catalogue(args.size, args.in_channels, args.num_classes, args.names)
    if args.json:
        print(json.dumps(catalogue, indent=1))
        return 0
    at = f" (at {args.size}x{args.size}, {args.in_channels} bands, {args.num_classes} classes)" if args.size else ""
    print(f"baselines{at}:")
    for entry in catalogue["baselines"]:
        print(f"  {entry['name']:<24} {_cost(entry):<28} {entry['description']}")
    print("search spaces (terralite search NAME):")
    for entry in catalogue["search_spaces"]:
        bounds = "".join(f"\n    {bound}: {_cost(entry[bound])}" for bound in ("lightest", "heaviest") if bound in entry)
        print(f"  {entry['name']:<24} {entry['description']}{bounds}")
    print("model kinds (the 'kind' of a spec):")
    for entry in catalogue["model_kinds"]:
        pretrained = f"; --pretrained: {entry['pretrained']}" if entry["pretrained"] else ""
        print(f"  {entry['name']:<24} {entry['builder']}{pretrained}")
    return 0
