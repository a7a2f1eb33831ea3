"""Runs `cis triage` and `cis rca` over the labelled sets and scores the answers.
Usage: evaluate.py CIS WORKDIR [cis analyser flags...] (bench/analysis.sh calls it)."""
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import alerts as A  # noqa: E402
import heldout as H  # noqa: E402
import rca_cases as R  # noqa: E402

ORDER = ["outage", "active-attack", "denial-of-service", "security-logging", "privilege-change", "brute-force",
         "security-component", "hygiene", "routine-error", "noise"]
CRITICAL = {"outage", "active-attack"}

cis, work, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(work, exist_ok=True)


def run(args):
    out = subprocess.run([cis, "--output", "json", *args, *flags], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"cis {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def write(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def ranks(xs):
    """Average ranks (ties share the mean of their places)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def batch_of(name, items, shape):
    if shape == "jsonl":
        return write(name, "".join(json.dumps(a) + "\n" for a, _ in items))
    if shape == "array":
        return write(name, json.dumps([a for a, _ in items], indent=1))
    if shape == "document":
        return write(name, json.dumps({"Findings": [a for a, _ in items]}, indent=2))
    return write(name, "".join(a + "\n" for a, _ in items))


def id_of(alert, position):
    if isinstance(alert, str):
        return f"line-{position}"
    for k in ("id", "Id", "alertId", "uuid"):
        if k in alert:
            return alert[k]
    return f"line-{position}"


def score(batches):
    rows, rhos, misses = [], {}, []
    for name, items, shape in batches:
        score_batch(name, items, shape, rows, rhos, misses)
    right = sum(e == g for _, _, e, g in rows)
    tp = sum(e in CRITICAL and g in CRITICAL for _, _, e, g in rows)
    fp = sum(e not in CRITICAL and g in CRITICAL for _, _, e, g in rows)
    fn = sum(e in CRITICAL and g not in CRITICAL for _, _, e, g in rows)
    defined = [r for r in rhos.values() if r is not None]
    return dict(alerts=len(rows), sources=len(batches), right=right, tp=tp, fp=fp, fn=fn, rhos=rhos,
                median=statistics.median(defined) if defined else None,
                low=min(defined) if defined else None, high=max(defined) if defined else None, misses=misses)


def score_batch(name, items, shape, rows, rhos, misses):
    report = run(["triage", batch_of(name, items, shape)])
    got = {}
    for f in report["findings"]:
        for i in f["alert_ids"]:
            got[i] = (f["rank"], f["category"])
    xs, ys = [], []
    for n, (alert, expected) in enumerate(items, start=1):
        key = id_of(alert, n)
        rank, category = got.get(key, (len(items) + 1, "missing"))
        rows.append((name, key, expected, category))
        if category != expected:
            misses.append(f"{name} {key}: expected {expected}, got {category}")
        xs.append(rank)
        ys.append(ORDER.index(expected))
    rhos[name] = spearman(xs, ys)


main = score([("app.jsonl", A.APP, "jsonl"), ("edr.json", A.EDR, "array"), ("guardduty.json", A.GUARDDUTY, "document"),
              ("securityhub.json", A.SECURITYHUB, "document"), ("cloudwatch.jsonl", A.CLOUDWATCH, "jsonl"), ("lab.log", A.LAB, "lines")])
held = score([("heldout-app.jsonl", H.APP, "jsonl"), ("heldout-guardduty.json", H.AWS, "document"),
              ("heldout-securityhub.json", H.SH, "document"), ("heldout-cloudwatch.jsonl", H.CW, "jsonl")])

rca_rows = []
for case in R.CASES:
    (lext, ltext), (rext, rtext) = case["logs"], case["rules"]
    report = run(["rca", "--logs", write(f"{case['name']}-logs.{lext}", ltext), "--rules", write(f"{case['name']}-rules.{rext}", rtext)])
    issues = [i for i in report["issues"] if not i["root_cause"].endswith("is allow-any")]
    first = issues[0] if issues else None
    got_rule = first["rule"] if first else None
    got_category = first["category"] if first else None
    rca_rows.append((case["name"], case["rule"], got_rule, case["category"], got_category))
rule_right = sum(e == g for _, e, g, _, _ in rca_rows)
both_right = sum(e == g and ec == gc for _, e, g, ec, gc in rca_rows)

analyser = next((flags[i + 1] for i, f in enumerate(flags) if f == "--analyser" and i + 1 < len(flags)), "builtin")


def summary(m):
    return {
        "alerts": m["alerts"], "sources": m["sources"], "category_accuracy": m["right"] / m["alerts"],
        "critical_precision": m["tp"] / (m["tp"] + m["fp"]) if m["tp"] + m["fp"] else None,
        "critical_recall": m["tp"] / (m["tp"] + m["fn"]) if m["tp"] + m["fn"] else None,
        "spearman_by_batch": m["rhos"], "spearman_median": m["median"], "misclassified": m["misses"],
    }


result = {
    "analyser": analyser,
    "development": summary(main),
    "held_out": summary(held),
    "rca_cases": len(rca_rows),
    "root_cause_accuracy": rule_right / len(rca_rows),
    "root_cause_and_category_accuracy": both_right / len(rca_rows),
    "rca": [dict(case=c, expected_rule=e, rule=g, expected_category=ec, category=gc) for c, e, g, ec, gc in rca_rows],
}
with open(os.path.join(work, f"result-{analyser}.json"), "w") as f:
    json.dump(result, f, indent=2)
print(f"analyser: {analyser}")
for label, m in [("development set (its misses were mended after the first run)", main), ("held-out set (run once)", held)]:
    print(f"triage, {label}: {m['alerts']} alerts from {m['sources']} sources; category right {m['right']}/{m['alerts']} ({m['right'] / m['alerts']:.0%})")
    print(f"  critical: precision {m['tp']}/{m['tp'] + m['fp']}, recall {m['tp']}/{m['tp'] + m['fn']}")
    print("  Spearman per batch: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in m["rhos"].items()))
    if m["median"] is not None:
        print(f"  median {m['median']:.2f}, range {m['low']:.2f} to {m['high']:.2f}")
    for x in m["misses"]:
        print(f"  missed: {x}")
print(f"rca: {len(rca_rows)} cases; rule right {rule_right}/{len(rca_rows)}, rule and category right {both_right}/{len(rca_rows)}")
for c, e, g, ec, gc in rca_rows:
    if e != g or ec != gc:
        print(f"  {c}: expected rule {e} ({ec}), got {g} ({gc})")
