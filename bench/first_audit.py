"""A newcomer's first audit, from an empty workspace, and the cost of a repeated audit pass.

1. ``app``: the Streamlit app (``streamlit.testing.v1.AppTest``, as ``streamlit run app.py`` serves it) from an
   empty workspace: seconds from opening the app, through "Open the demo audit", to the DEO card on screen.
2. ``cli``: ``python -m fairaudit audit --dataset synthetic-faces --model demo --target Smiling --sensitive Male``
   in a new process, from an empty workspace (cold: every image drawn) and again (warm: images read back from
   the workspace's render cache); the figures it prints are README's.
3. ``repeat``: a repeated audit pass (the images already in the render cache) vs a bare ``model(x)`` loop over
   the same batches pre-loaded as tensors, as a ratio of images per second (goal ≥ 0.9).

    python bench/first_audit.py [--parts app,cli,repeat] [--device cpu]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import argparse
import os
import subprocess
import tempfile
import time

AUDIT = ["audit", "--dataset", "synthetic-faces", "--model", "demo", "--target", "Smiling", "--sensitive", "Male"]


def app_seconds(home: Path, timeout: float = 300.0) -> tuple[float, str]:
    os.environ["FAIRAUDIT_HOME"] = str(home)
    start = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()
    at.button[0].click().run()
    while time.perf_counter() - start < timeout:
        cards = {m.label: m.value for m in at.metric}
        if "DEO" in cards:
            return time.perf_counter() - start, f"accuracy {cards.get('Accuracy')}  DEO {cards['DEO']}  SPD {cards['SPD']}"
        time.sleep(0.2)
        at.run()
    raise SystemExit(f"the demo audit did not show within {timeout:.0f} s")


def cli_seconds(home: Path, out: Path, device: str) -> tuple[float, str]:
    env = {**os.environ, "FAIRAUDIT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fairaudit", *AUDIT, "--device", device, "--json", str(out)],
                          env=env, capture_output=True, text=True, cwd=home.parent)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - start, proc.stdout.strip().split("  -> ")[0]


def repeat_ratio(home: Path, device_name: str) -> str:
    import torch

    from fairaudit.audit import predict
    from fairaudit.data import load_dataset
    from fairaudit.demo import get_demo_model
    from bare_loop import bare_model_seconds
    from fairaudit.device import default_batch_size, resolve_device

    os.environ["FAIRAUDIT_HOME"] = str(home)
    device = resolve_device(device_name)
    ds = load_dataset("synthetic-faces", "test", "Smiling", ["Male"])
    model, _ = get_demo_model("synthetic-faces", device=device)
    model = model.to(device).eval()
    bs = default_batch_size(device, "image")
    predict(model, ds, device=device, batch_size=bs)  # the first pass draws the images into the cache
    t0 = time.perf_counter()
    preds = predict(model, ds, device=device, batch_size=bs)
    audit_s = time.perf_counter() - t0
    bare_s = bare_model_seconds(model, ds, bs, device)
    audit_ips, bare_ips = len(preds) / audit_s, len(ds) / bare_s
    return (f"repeated audit pass {audit_ips:.0f} img/s ({audit_s:.2f} s) vs bare model(x) {bare_ips:.0f} img/s "
            f"({bare_s:.2f} s): ratio {audit_ips / bare_ips:.2f} (goal >= 0.9), {len(ds)} images on {device}, "
            f"torch threads {torch.get_num_threads()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="app,cli,repeat")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "cli" in parts:
            for label in ("cold (empty workspace)", "warm (images cached)"):
                seconds, figures = cli_seconds(tmp / "cli_home", tmp / "x.json", args.device)
                print(f"cli {label}: {seconds:.1f} s  {figures}")
        if "repeat" in parts:
            print(repeat_ratio(tmp / "repeat_home", args.device))
        if "app" in parts:  # last: it leaves the app's background threads behind
            seconds, figures = app_seconds(tmp / "app_home")
            print(f"app from an empty workspace to the demo audit's numbers: {seconds:.1f} s  {figures}")


if __name__ == "__main__":
    main()
