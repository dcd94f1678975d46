"""ns per ``privacy.scrub`` call on typical url.path values and an exception message.

    python benchmarks/scrub_paths.py [--against OTHER_CHECKOUT]

``--against`` times another checkout's scrubber in the same process, interleaved (e.g. a git worktree of an
older commit), so both share the machine's noise. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sdk"))
from modelotel.privacy import scrub  # noqa: E402

CASES = {
    "/healthz": "/healthz",
    "route": "/v1/models/fraud/predict",
    "numeric id": "/items/12345/reviews",
    "9-digit id": "/orders/123456789/items",
    "uuid id": "/users/3f2b8c1e-9a4d-4e7b-b6c5-1d2e3f4a5b6c/orders",
    "long static": "/api/v2/organizations/acme/projects/churn-model/deployments/canary/predict",
    "exception": "ValueError: Input contains NaN, infinity or a value too large for dtype('float64').",
    "token path": "/v1/users/ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789/keys",
}


def best_ns(fn, text: str, number: int = 50_000, repeat: int = 7) -> float:
    return min(timeit.repeat(lambda: fn(text), number=number, repeat=repeat)) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="another checkout whose sdk/modelotel/privacy.py to time alongside")
    args = parser.parse_args()
    other = None
    if args.against:
        spec = importlib.util.spec_from_file_location("other_privacy", Path(args.against) / "sdk/modelotel/privacy.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        other = module.scrub
    print(f"| case | {'other ns | ' if other else ''}ns | output |")
    print(f"|---|{'---:|' if other else ''}---:|---|")
    for name, text in CASES.items():
        mine = best_ns(scrub, text)
        theirs = f"{best_ns(other, text):,.0f} | " if other else ""
        print(f"| {name} | {theirs}{mine:,.0f} | `{scrub(text)}` |")


if __name__ == "__main__":
    main()
