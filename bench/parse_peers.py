"""The peers for reading a flow-log file: pandas read_csv with its C engine or with
engine="pyarrow" (multi-threaded), and polars read_csv (multi-threaded), each parsing the
same file cis reads into a table. Prints the rows and the seconds of the read call alone
(the interpreter's start and the imports excluded)."""
import json
import sys
import time

NAMES = ["version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
         "packets", "bytes", "start", "end", "action", "log-status"]
engine, path = sys.argv[1], sys.argv[2]
if engine == "polars":
    import polars as pl
    t0 = time.perf_counter()
    df = pl.read_csv(path, separator=" ", has_header=False, new_columns=NAMES, null_values="-")
    t1 = time.perf_counter()
    rows = df.height
else:
    import pandas as pd
    t0 = time.perf_counter()
    df = pd.read_csv(path, sep=" ", header=None, names=NAMES, engine=engine, na_values=["-"])
    t1 = time.perf_counter()
    rows = len(df)
print(json.dumps({"engine": engine, "rows": rows, "seconds": t1 - t0}))
