"""Check that the README's example output is what `python main.py` prints today.

    python tools/check_readme.py                     # run the default `python main.py` (about a minute on 2 cores)
    python tools/check_readme.py --log run.txt       # compare the printed output of a run made before
    python tools/check_readme.py --tolerance 0.002   # allow each score to differ by this much

The README shows the table the default run prints (the bundled sample, 12 epochs, CPU) and the machine it was
recorded on. Any change that moves those numbers must update the README in the same change; this script finds the
stale copy. Exit 0: equal; 1: they differ (the differing rows are listed, and the table to paste); 2: the run
failed or no table was found.

On the same CPU, thread count and library versions the run is bit-for-bit repeatable, and the tables must be equal
to the letter. Another CPU's kernels round float32 sums in another order, and twelve epochs of training on 30 small
images carry a last-bit difference into the second decimal (a change of rounding alone moved the mIoU by 0.03), so
on another machine only the table's rows and layout are compared, and the script says so.
"""
from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ANCHOR = "Example output of `python main.py`"  # the README paragraph just before the copied table
HEADER = re.compile(r"^class\s+val\s+test\s*$")
LAST_LINE = "Scores: void ignored"  # the legend's last line ends the table
RECORDED = re.compile(r"^Recorded on: (.+?)\.?$", re.M)  # the README line that names the machine of its table
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what picks the CPU kernels


def environment() -> str:
    """The machine and libraries the numbers depend on, as the README records them."""
    import torch

    cpu, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux
        cpu = platform.processor() or cpu
    isa = " ".join(flag for flag in ISA_FLAGS if flag in flags) or "no AVX2"
    return f"{cpu} ({isa}), {torch.get_num_threads()} threads, torch {torch.__version__}"


def extract_table(text: str, after: str | None = None) -> list[str] | None:
    """The printed table (header to legend), the first after the line containing `after`; None if there is none."""
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next((i for i, line in enumerate(lines) if after in line), None)
        if start is None:
            return None
    begin = next((i for i in range(start, len(lines)) if HEADER.match(lines[i])), None)
    if begin is None:
        return None
    end = next((i for i in range(begin, len(lines)) if lines[i].startswith(LAST_LINE)), None)
    return None if end is None else [line.rstrip() for line in lines[begin:end + 1]]


def differences(expected: list[str], actual: list[str], tolerance: float) -> list[str]:
    """The rows that differ: in their words, or in a score by more than `tolerance`."""
    if len(expected) != len(actual):
        return [f"the README's table has {len(expected)} lines, the run printed {len(actual)}"]
    found = []
    for want, got in zip(expected, actual):
        if want == got:
            continue
        want_words, got_words = want.split(), got.split()
        try:
            close = (len(want_words) == len(got_words)
                     and all(a == b or abs(float(a) - float(b)) <= tolerance for a, b in zip(want_words, got_words)))
        except ValueError:  # a word that is not a number differs
            close = False
        if not close:
            found.append(f"README: {want}\n   run: {got}")
    return found


def labels(line: str) -> list[str]:
    """A table line without its numbers: the row's name (and the header, rules and legend whole)."""
    return [word for word in line.split() if not re.fullmatch(r"-?[0-9.]+|-", word)]


def default_run_output() -> str:
    """What `python main.py` prints, run in this checkout into a temporary run folder."""
    with tempfile.TemporaryDirectory() as run_dir:
        done = subprocess.run([sys.executable, "main.py", "--output-dir", str(Path(run_dir) / "run")], cwd=ROOT,
                              capture_output=True, text=True)
    if done.returncode:
        print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"error: python main.py exited with {done.returncode}")
    return done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="the printed output of a `python main.py` run (default: run it now)")
    parser.add_argument("--tolerance", type=float, default=0.0, help="the largest difference allowed in a score")
    args = parser.parse_args(argv)
    expected = extract_table(README.read_text(), after=ANCHOR)
    if expected is None:
        print(f"error: {README} has no printed table after {ANCHOR!r}", file=sys.stderr)
        return 2
    if args.log is not None and not args.log.is_file():
        print(f"error: --log {args.log} does not exist: give the saved output of python main.py", file=sys.stderr)
        return 2
    output = args.log.read_text() if args.log is not None else default_run_output()
    actual = extract_table(output)
    if actual is None:
        print("error: the run printed no results table (its output has no 'class val test' header)", file=sys.stderr)
        return 2
    recorded, here = RECORDED.search(README.read_text()), environment()
    if recorded is None or recorded.group(1) != here:
        print(f"note: the README's table was recorded on {recorded.group(1) if recorded else 'an unnamed machine'}, "
              f"this is {here}: another float rounding, so only the rows and layout are compared")
        found = [f"README: {want}\n   run: {got}" for want, got in zip(expected, actual) if labels(want) != labels(got)]
        if len(expected) != len(actual):
            found.append(f"the README's table has {len(expected)} lines, the run printed {len(actual)}")
    else:
        found = differences(expected, actual, args.tolerance)
    if found:
        print(f"README.md's example output is stale ({len(found)} rows differ"
              f"{f' by more than {args.tolerance:g}' if args.tolerance else ''}):\n" + "\n".join(found)
              + "\n\nThe table the run printed, to paste into the README:\n" + "\n".join(actual), file=sys.stderr)
        return 1
    print(f"README.md's example output equals the default run's table ({len(actual)} lines"
          f"{f', scores within {args.tolerance:g}' if args.tolerance else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
