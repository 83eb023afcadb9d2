"""`make mutate`'s table: the mutation score of each mutated module, from mutmut's own
result files (mutants/**/*.py.meta), and every surviving mutant by name.

Score = (killed + timeout) / (all - skipped), as mutmut reckons it. Exits 1 when a
module is under the bar, so `make mutate` fails where the tests fall short.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

BAR = 85.0
KILLED = {1, 3, 36, -24, 24, 152, 255}  # a test failed, or the mutant hung until killed
SKIPPED = {34}


def main(root: Path = Path("mutants")) -> int:
    rows, survivors, below = [], [], []
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = str(meta.relative_to(root)).removesuffix(".meta")
        tally = Counter(
            "killed"
            if c in KILLED
            else "skipped"
            if c in SKIPPED
            else "unchecked"
            if c is None
            else "survived"
            for c in codes.values()
        )
        tested = len(codes) - tally["skipped"]
        score = 100.0 * tally["killed"] / tested if tested else 100.0
        rows.append(
            (module, len(codes), tally["killed"], tally["survived"], tally["unchecked"], score)
        )
        survivors += [
            name for name, c in codes.items() if c is not None and c not in KILLED | SKIPPED
        ]
        if score < BAR:
            below.append(module)
    print(
        f"{'module':34} {'mutants':>8} {'killed':>7} {'survived':>9} {'unchecked':>10} {'score':>7}"
    )
    for module, total, killed, survived, unchecked, score in rows:
        print(f"{module:34} {total:8} {killed:7} {survived:9} {unchecked:10} {score:6.1f}%")
    all_codes = sum(r[1] for r in rows)
    all_killed = sum(r[2] for r in rows)
    overall = 100 * all_killed / all_codes
    print(f"{'all':34} {all_codes:8} {all_killed:7} {'':9} {'':10} {overall:6.1f}%")
    print(f"\n{len(survivors)} surviving mutants (mutmut show NAME):")
    for name in survivors:
        print("  " + name)
    if below:
        print(f"\nunder {BAR:.0f} %: {', '.join(below)}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
