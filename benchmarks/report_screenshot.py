"""The compile report as a browser shows it: compile (or reuse) an artifact, write its page with
``oobleck report``, and screenshot the page in headless Chromium.

Writes ``docs/report_example.json`` (the artifact, made by ``examples/compile_report.py`` on the
embedded SmolLM2; reused when present), ``docs/report_example.html`` (the page) and
``docs/report_example.png`` (the screenshot). Needs ``chromium`` (``apt-get install chromium``).

    python benchmarks/report_screenshot.py [--compile] [--height 2400]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="compile the artifact again (minutes on SmolLM2)")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--cache", default=str(ROOT / "examples" / "out" / "cache"), help="LM cache directory")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    DOCS.mkdir(exist_ok=True)
    artifact, page, png = DOCS / "report_example.json", DOCS / "report_example.html", DOCS / "report_example.png"
    python = sys.executable
    if args.compile or not artifact.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [python, str(ROOT / "examples" / "compile_report.py"), "--out", str(artifact), "--cache", args.cache,
                 "--report", str(Path(tmp) / "live.html")],
                check=True,
            )  # fmt: skip
    subprocess.run([python, "-m", "oobleck.cli", "report", str(artifact), "-o", str(page)], check=True)
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={png}",
         f"--window-size={args.width},{args.height}", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=180,
    )  # fmt: skip
    print(f"wrote {artifact.relative_to(ROOT)}, {page.relative_to(ROOT)} and {png.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
