"""YAML snapshots: load time and memory per MB, and how soon SIGTERM stops a loading `serve`.

    .venv/bin/python -m benchmarks.bench_snapshot_yaml --mb 10 50
    .venv/bin/python -m benchmarks.bench_snapshot_yaml --mb 50 --sigterm [--baseline-repo DIR]

A `kubectl get -o yaml` List of copies of the example's VMIs (about 2.4 KB of YAML each) is
written at each size. Each reader runs in a fresh process: the baseline is the whole-document
load the snapshot reader did before (`yaml.load_all` with libyaml, one node graph per document),
measured in the same run; the other is `exporter.snapshot.load` (libyaml's events, one item at a
time). Figures: seconds, and peak RSS above the process's RSS once the text was read, per MB of
input. `--sigterm` starts `python -m exporter serve --snapshot` on the largest file, sends
SIGTERM two seconds after it listens and times the exit (for this checkout, and for the
checkout at `--baseline-repo` when given, e.g. a worktree of the previous release).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cluster-snapshot.yaml"

_MEASURE = """
import json, resource, sys, time
from pathlib import Path
path, how = Path(sys.argv[1]), sys.argv[2]
text = path.read_text()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
if how == "whole-document":
    import yaml
    from exporter.yamlstream import _Loader
    objects = sum(len(d.get("items", [])) for d in yaml.load_all(text, Loader=_Loader) if d)
else:
    from exporter import snapshot
    del text
    objects = sum(len(v) for v in snapshot.load(path).values())
seconds = time.monotonic() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_kib": peak - before, "objects": objects}))
"""


def write_fleet(path: Path, megabytes: float) -> int:
    """A List of VMI copies of about `megabytes` MB; returns the number of VMIs."""
    items = yaml.safe_load(EXAMPLE.read_text())["items"]
    vmis = [i for i in items if i["kind"] == "VirtualMachineInstance"]
    target, size, count = int(megabytes * 1e6), 0, 0
    with path.open("w") as out:
        out.write("apiVersion: v1\nkind: List\nitems:\n")
        out.write(yaml.safe_dump([i for i in items if i["kind"] != "VirtualMachineInstance"]))
        while size < target:
            vmi = copy.deepcopy(vmis[count % len(vmis)])
            vmi["metadata"]["name"] = f"{vmi['metadata']['name']}-{count}"
            block = yaml.dump([vmi], Dumper=yaml.CSafeDumper)
            out.write(block)
            size += len(block)
            count += 1
    return count


def measure(path: Path, how: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), how],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sigterm_seconds(repo: Path, path: Path, *, limit: float = 180.0) -> tuple[float, int | None]:
    """Seconds from SIGTERM (2 s after listening) to exit, and the exit code (None: killed)."""
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "serve", "--snapshot", str(path)]
    argv += ["--listen", f"127.0.0.1:{port}", "--log-format", "json"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with subprocess.Popen(argv, cwd=repo, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"serve.listening"' in line:
                break
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code: int | None = proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        return time.monotonic() - started, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[10.0, 50.0])
    parser.add_argument("--sigterm", action="store_true", help="time SIGTERM during a load")
    parser.add_argument("--skip-load", action="store_true", help="only the SIGTERM figures")
    parser.add_argument("--baseline-repo", type=Path, help="another checkout for --sigterm")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-yaml-") as tmp:
        files = []
        for megabytes in args.mb:
            path = Path(tmp) / f"fleet-{megabytes:g}mb.yaml"
            vmis = write_fleet(path, megabytes)
            files.append((path, vmis))
        if not args.skip_load:
            print("| input | reader | seconds | s per MB | peak RSS MB above the text | per MB |")
            print("|---|---|---|---|---|---|")
            for path, vmis in files:
                mb = path.stat().st_size / 1e6
                figures = {how: measure(path, how) for how in ("whole-document", "streamed")}
                for how, got in figures.items():
                    rss = got["rss_kib"] / 1024
                    print(
                        f"| {mb:.1f} MB, {vmis} VMIs | {how} | {got['seconds']:.1f} | "
                        f"{got['seconds'] / mb:.2f} | {rss:.0f} | {rss / mb:.1f} |"
                    )
                old, new = figures["whole-document"], figures["streamed"]
                print(
                    f"| | ratio | {old['seconds'] / new['seconds']:.1f}x faster | | "
                    f"{old['rss_kib'] / max(new['rss_kib'], 1):.1f}x less | |"
                )
        if args.sigterm:
            path, vmis = files[-1]
            mb = path.stat().st_size / 1e6
            print(f"\nSIGTERM 2 s after `serve --snapshot` of {mb:.1f} MB of YAML started:")
            repos = [("this checkout", REPO)]
            if args.baseline_repo:
                repos.append((f"baseline {args.baseline_repo}", args.baseline_repo))
            for name, repo in repos:
                seconds, code = sigterm_seconds(repo, path)
                print(f"- {name}: exited {code} after {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
