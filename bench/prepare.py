"""Makes the benchmark's inputs under target/bench (never committed: they are generated).

- synthetic.csv: 1,000,000 rows x 6 features, 1% anomalies (seeded);
- luflow.csv: the four LUFlow days from ../shared/data, benign and malicious rows, numeric
  columns without the timestamps, empty cells as 0;
- flows-1gb.log: ten days of VPC Flow Log records in the default v2 format, in time order
  as CloudWatch Logs exports them (about 1 GB), and baseline.log, the day before (same traffic), to train on.
"""
import pathlib
import sys

import numpy as np
import pandas as pd

out = pathlib.Path(sys.argv[1])
shared = pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(20261123)

if not (out / "synthetic.csv").exists():
    n, d = 1_000_000, 6
    normal = n - n // 100
    centers = rng.normal(0, 4, size=(3, d))
    X = np.vstack([
        centers[rng.integers(0, 3, normal)] + rng.normal(0, 1, size=(normal, d)),
        rng.uniform(-12, 12, size=(n // 100, d)),
    ])
    y = np.r_[np.zeros(normal, dtype=int), np.ones(n // 100, dtype=int)]
    order = rng.permutation(n)
    df = pd.DataFrame(X[order], columns=[f"f{i}" for i in range(d)])
    df["label"] = y[order]
    df.to_csv(out / "synthetic.csv", index=False, float_format="%.6f")

if not (out / "luflow.csv").exists():
    days = sorted((shared / "luflow").glob("*.csv"))
    df = pd.concat([pd.read_csv(p) for p in days], ignore_index=True)
    df = df[df["label"].isin(["benign", "malicious"])]
    df = df.drop(columns=["time_start", "time_end"]).fillna(0)
    df.to_csv(out / "luflow.csv", index=False)

def flow_lines(rows, t0, hosts, seed):
    r = np.random.default_rng(seed)
    eni = r.integers(0, 50, rows)
    start = t0 + np.sort(r.integers(0, 86_400, rows))
    packets = r.integers(1, 200, rows)
    dst = hosts[r.integers(0, len(hosts), rows)]
    frame = pd.DataFrame({
        "version": 2, "account": "123456789012",
        "eni": np.char.add("eni-0a1b2c3d4e5f6", np.char.zfill(eni.astype(str), 4)),
        "src": np.char.add("10.42.1.", (eni + 10).astype(str)), "dst": dst,
        "srcport": r.integers(32768, 60999, rows), "dstport": r.choice([443, 80, 22, 53], rows),
        "protocol": 6, "packets": packets, "bytes": packets * r.integers(60, 1500, rows),
        "start": start, "end": start + r.integers(0, 60, rows),
        "action": np.where(r.random(rows) < 0.05, "REJECT", "ACCEPT"), "status": "OK",
    })
    return frame

hosts = np.array([f"52.46.{i // 256}.{i % 256}" for i in range(2000)])
if not (out / "flows-1gb.log").exists():
    with open(out / "flows-1gb.log.tmp", "w") as f:
        for day in range(10):
            flow_lines(1_000_000, 1_767_225_600 + 86_400 * day, hosts, 1 + day).to_csv(f, sep=" ", header=False, index=False)
    (out / "flows-1gb.log.tmp").rename(out / "flows-1gb.log")
if not (out / "baseline.log").exists():
    flow_lines(1_000_000, 1_767_225_600 - 86_400, hosts, 0).to_csv(out / "baseline.log", sep=" ", header=False, index=False)
