"""The peer: scikit-learn's IsolationForest on the same CSV as `cis detect --format csv`.

Prints one JSON line: rows, fit and score seconds (loading excluded, as for cis), ROC AUC.
Features are every column but the label, as cis takes them; rows whose label is neither
positive nor negative are dropped, as cis drops them.
"""
import argparse
import json
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

POSITIVE = {"1", "1.0", "true", "yes", "malicious", "attack", "anomaly"}
NEGATIVE = {"0", "0.0", "false", "no", "benign", "normal"}

p = argparse.ArgumentParser()
p.add_argument("csv")
p.add_argument("--label", default="label")
p.add_argument("--jobs", type=int, default=1)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()

df = pd.read_csv(a.csv, dtype={a.label: str}, keep_default_na=False)
labels = df[a.label].str.lower()
keep = labels.isin(POSITIVE | NEGATIVE)
y = labels[keep].isin(POSITIVE).to_numpy()
X = df.loc[keep].drop(columns=[a.label]).replace("", 0).astype(np.float64).to_numpy()

t0 = time.perf_counter()
model = IsolationForest(n_estimators=100, max_samples=256, n_jobs=a.jobs, random_state=a.seed).fit(X)
t1 = time.perf_counter()
scores = -model.score_samples(X)
t2 = time.perf_counter()
print(json.dumps({
    "rows": int(X.shape[0]), "features": int(X.shape[1]), "jobs": a.jobs,
    "fit_s": t1 - t0, "score_s": t2 - t1,
    "roc_auc": float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None,
    "pr_auc": float(average_precision_score(y, scores)) if 0 < y.sum() else None,
}))
