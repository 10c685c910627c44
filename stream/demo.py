"""``shiftwatch demo``: the whole pipeline on an embedded synthetic stream, no broker.

Four keys of lognormal latencies on a one-second snapshot clock; 'checkout' slows
down by ``shift_factor`` after ``shift_at`` seconds. Percentiles print live, the
shift event prints when it fires, and /metrics plus the live page are served.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from .metrics import make_registry
from .records import dumps
from .settings import Settings
from .synth import Shift, SyntheticTraffic
from .web import make_web_app, serve

__all__ = ["run_demo"]

TICK = 0.25


def _ms(s: float) -> str:
    return f"{s * 1000:8.1f}"


async def _demo(settings: Settings, duration: float, shift_at: float, shift_factor: float, seed: int, quiet: bool) -> int:
    pipeline = settings.make_pipeline()
    registry = make_registry(pipeline, max_label_keys=settings.max_label_keys)
    runner = await serve(make_web_app(pipeline, registry), settings.web_host, settings.web_port)
    url = f"http://{settings.web_host}:{settings.web_port}/"
    print(f"shiftwatch demo: live page {url}  metrics {url}metrics", flush=True)
    print(f"  4 keys, 1 s snapshots; 'checkout' latency x{shift_factor} after {shift_at:g} s" + ("" if duration <= 0 else f"; stops after {duration:g} s"), flush=True)
    traffic = SyntheticTraffic(shifts=(Shift("checkout", shift_at, shift_factor),), seed=seed)
    start = time.time()
    t0 = start
    step = 0
    last_table = 0.0
    try:
        while duration <= 0 or time.time() - start < duration:
            offset = step * TICK
            # The synthetic source emits one second at a time; feed it in quarter-second slices.
            if step % 4 == 0:
                pending = traffic.second(t0, offset)
                pending.sort(key=lambda e: e["ts"])  # already ordered; explicit for clarity
                slices = [[e for e in pending if offset + i * TICK <= e["ts"] - t0 < offset + (i + 1) * TICK] for i in range(4)]
            chunk = slices[step % 4]
            if chunk:
                out = pipeline.feed(json.dumps(chunk).encode())
                for ev in out.shifts:
                    print("\n" + ("SHIFT " if ev.kind == "shift" else "RETRACTION ") + dumps(ev.to_json()), flush=True)
                    if ev.kind == "shift":
                        moved = ", ".join(f"{m.metric} {m.before * 1000:.1f} -> {m.after * 1000:.1f} ms ({m.relative_change:+.0%})" for m in ev.metrics)
                        print(f"  => {ev.key}: {ev.direction} since {time.strftime('%H:%M:%S', time.localtime(ev.at))} ({time.time() - start:.1f} s after start): {moved}", flush=True)
            if not quiet and time.time() - last_table >= 1.0:
                last_table = time.time()
                _print_table(pipeline, time.time() - start)
            step += 1
            await asyncio.sleep(max(0.0, start + step * TICK - time.time()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await runner.cleanup()
    s = pipeline.stats
    print(f"\ndemo done: {s.accepted} events, {s.snapshots} snapshots, {s.shifts} shift event(s)", flush=True)
    return 0


def _print_table(pipeline, elapsed: float) -> None:  # type: ignore[no-untyped-def]
    names = pipeline.config.names
    lines = [f"t={elapsed:5.1f}s   key          events " + "".join(f"{n + ' ms':>9}" for n in names) + "  (last snapshot)"]
    for key in sorted(pipeline.states):
        st = pipeline.states[key]
        if not st.recent:
            continue
        s = st.recent[-1]
        lines.append(f"            {key:<12}{st.moments.count:>8} " + " ".join(_ms(v) for v in s.q))
    print("\n".join(lines), flush=True)


def run_demo(settings: Settings, duration: float, shift_at: float, shift_factor: float, seed: int, quiet: bool = False) -> int:
    try:
        return asyncio.run(_demo(settings, duration, shift_at, shift_factor, seed, quiet))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
