"""
The dispatcher on a fake clock (tests/sending/dispatch_simulation.py: the real DispatchState and
ledger, simulated calls and writes): throughput as a fraction of W/L and ledger writes per 1,000
calls, L = 50 ms steady or lognormal (sigma 0.3), over write times w, for the measured trigger and for
a fixed one (a write once W // 8 announced batches are left, the trigger before the measured one).
Runs in seconds; the bound (2·W batches announced and unsettled) is checked at every step.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from airflow_provider_juhe.sending.dispatch import DispatchState
from tests.sending.dispatch_simulation import simulate

LATENCY = 0.05


def main() -> None:
    measured = DispatchState.write_ahead
    print("simulation: L = 50 ms; cells: fraction of W/L (writes per 1,000 calls), measured | fixed trigger")
    for workers in (8, 32, 64):
        for write_ms in (5, 25, 35, 50):
            cells = []
            for sigma in (0.0, 0.3):
                figures = []
                for trigger in (measured, lambda state: max(1, state.max_workers // 8)):
                    DispatchState.write_ahead = trigger  # type: ignore[method-assign]
                    result = simulate(workers, write_ms / 1000, LATENCY, sigma, calls=6000, seed=7)
                    figures.append(f"{result.of_ideal:.3f} ({result.writes_per_1000_calls:3.0f})")
                DispatchState.write_ahead = measured  # type: ignore[method-assign]
                cells.append(f"{'steady' if not sigma else 'sigma=0.3'}: {' | '.join(figures)}")
            print(f"W={workers:3d} w={write_ms:2d} ms  " + "   ".join(cells))


if __name__ == "__main__":
    main()
