"""
Offline carrier grouping: our prefix table against phonenumbers' carrier data.

1,000,000 random numbers spread evenly over every 3-digit block 130–199. Prints numbers/s for both,
the speed ratio (target >= 20), the agreement, and each class of disagreement by 4-digit block.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _setup  # noqa: F401  (Airflow home)

from airflow_provider_juhe.mobiles import carrier_of, group_by_carrier

COUNT = 1_000_000
PHONENUMBERS_NAMES = {
    "China Mobile": "mobile",
    "China Unicom": "unicom",
    "China Telecom": "telecom",
    "China Broadnet": "broadnet",
}


def sample(count: int, seed: int = 2026) -> list[str]:
    rng = random.Random(seed)
    return [f"1{rng.randrange(30, 100)}{rng.randrange(10**8):08d}" for _ in range(count)]


def phonenumbers_carrier(number: str) -> str:
    import phonenumbers
    from phonenumbers import carrier

    try:
        parsed = phonenumbers.parse(number, "CN")
    except phonenumbers.NumberParseException:
        return "invalid"
    if not phonenumbers.is_valid_number(parsed):
        return "invalid"
    return PHONENUMBERS_NAMES.get(carrier.name_for_number(parsed, "en"), "unknown")


def main() -> None:
    import phonenumbers

    numbers = sample(COUNT)
    started = time.perf_counter()
    groups = group_by_carrier(numbers)
    ours_rate = COUNT / (time.perf_counter() - started)

    started = time.perf_counter()
    theirs = [phonenumbers_carrier(n) for n in numbers]
    theirs_rate = COUNT / (time.perf_counter() - started)

    # "No carrier" is one answer, whether phonenumbers calls the number invalid or has no name for it.
    ours = [carrier_of(n) for n in numbers]
    theirs = ["unknown" if t == "invalid" else t for t in theirs]
    pairs = list(zip(numbers, ours, theirs, strict=True))
    agree = sum(a == b for _, a, b in pairs)
    both_assigned = [(a, b) for _, a, b in pairs if a != "unknown" and b != "unknown"]
    classes = Counter((n[:4], a, b) for n, a, b in pairs if a != b)
    by_block3 = Counter((n[:3], a, b) for n, a, b in pairs if a != b)

    print(f"carrier_grouping: {COUNT:,} numbers over blocks 130-199, phonenumbers {phonenumbers.__version__}")
    print(
        f"ours (group_by_carrier): {ours_rate:12,.0f} numbers/s  groups { ({k: len(v) for k, v in groups.items()}) }"
    )
    print(f"phonenumbers per number: {theirs_rate:12,.0f} numbers/s")
    print(f"speed ratio ours/phonenumbers: {ours_rate / theirs_rate:.0f}x (target >= 20x)")
    print(f"agreement (carrier_of vs phonenumbers, 'no carrier' included): {agree / COUNT:.2%}")
    same = sum(a == b for a, b in both_assigned)
    print(f"agreement where both name a carrier: {same / len(both_assigned):.2%} of {len(both_assigned):,}")
    print("disagreements by 3-digit block (ours vs phonenumbers), then the 4-digit blocks inside them:")
    for (block, a, b), count in sorted(by_block3.items()):
        inner = sorted(k[0] for k in classes if k[0].startswith(block) and (k[1], k[2]) == (a, b))
        shown = ", ".join(inner[:10]) + (" ..." if len(inner) > 10 else "")
        print(f"  {block}: ours {a:8s} phonenumbers {b:8s} {count:7,d} numbers  [{shown}]")


if __name__ == "__main__":
    main()
