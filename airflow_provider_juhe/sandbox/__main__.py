"""
``python -m airflow_provider_juhe.sandbox --port 8765 --appkey KEY [--approve-after SECONDS]
[--latency SECONDS [--latency-sigma SIGMA]] [--template "【签名】内容"]... [--messages FILE] [--quiet]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from airflow_provider_juhe.mobiles import mask_sample
from airflow_provider_juhe.sandbox.server import JuheSandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_juhe.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--appkey", default="sandbox-key", help="the only key accepted")
    parser.add_argument(
        "--approve-after", type=float, default=2.0, help="seconds a submitted template stays in review (2)"
    )
    parser.add_argument("--forbidden-word", action="append", help="content that makes the review reject")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="each call's response time in seconds (own work included); with --latency-sigma, its mean",
    )
    parser.add_argument(
        "--latency-sigma",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="lognormal spread of the response times around --latency: the standard deviation of their "
        "log (0.3: most within 0.5x-1.8x the mean); 0, the default: every call takes --latency",
    )
    parser.add_argument("--seed", type=int, help="seed of the latency draws (and fraction faults)")
    parser.add_argument(
        "--quiet", action="store_true", help="do not print each accepted message (load tests, benchmarks)"
    )
    parser.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="【SIGNATURE】CONTENT",
        help="an approved template to start with (repeatable); its id is printed",
    )
    parser.add_argument(
        "--messages",
        metavar="FILE",
        help="append every accepted send call to FILE as JSON Lines, one line a call (count calls with wc -l)",
    )
    args = parser.parse_args(argv)

    sandbox = JuheSandbox(
        args.appkey,
        host=args.host,
        port=args.port,
        approve_after=args.approve_after,
        forbidden_words=tuple(args.forbidden_word or ("赌博", "贷款秒批")),
        latency=args.latency,
        latency_sigma=args.latency_sigma,
        seed=args.seed,
    )
    stopped = threading.Event()
    # Set from another thread: the handler runs on the main thread, which may hold the event's lock.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stopped.set).start())
    reported = 0

    def report_new() -> None:
        nonlocal reported
        # Only the new ones: copying every message under the lock would stall the server.
        messages = sandbox.messages(reported)
        reported += len(messages)
        if args.messages and messages:
            with open(args.messages, "a", encoding="utf-8") as log:
                log.writelines(json.dumps(m, ensure_ascii=False) + "\n" for m in messages)
        if not args.quiet and messages:
            sys.stdout.write(
                "".join(
                    f"sent {m['sid']} tpl {m['tpl_id']} to {mask_sample(m['mobiles'], limit=3)}: {m['text']}\n"
                    for m in messages
                )
            )
            sys.stdout.flush()

    sandbox.start()
    try:
        for template in args.template:
            signature, content = _split_template(template)
            tpl_id = sandbox.add_template(content, signature)
            print(f"approved template {tpl_id}: 【{signature}】{content}", flush=True)
        print(f"Juhe sandbox listening on {sandbox.url} (Ctrl-C to stop)", flush=True)
        while not stopped.wait(0.5):
            report_new()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()  # first: every message it answered is in, and no other arrives
        report_new()
    return 0


def _split_template(text: str) -> tuple[str, str]:
    """``【签名】内容`` -> (signature, content); without 【】 the signature is ``沙箱``."""
    if text.startswith("【") and "】" in text:
        signature, _, content = text[1:].partition("】")
        return signature, content
    return "沙箱", text


if __name__ == "__main__":
    sys.exit(main())
