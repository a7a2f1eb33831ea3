#!/usr/bin/env python3
"""Writes assets/aws-prefixes.txt from AWS's published ranges (ip-ranges.json).

The detector groups destinations by AWS service, and the simulator rotates service
endpoints inside the same prefixes. Kept: us-east-1's prefixes that AWS lists only as
AMAZON (its own service endpoints: SSM, CloudWatch, STS, ...), us-east-1's S3, and the
global CLOUDFRONT edge. Not kept: EC2 and the like, which are other customers' machines
(an attacker can rent them) and so stay ordinary destinations; where they sit inside a
kept prefix they are listed as CUSTOMER, and the longest prefix wins.

Usage: python3 assets/aws-prefixes.py ../shared/data/aws/ip-ranges.json > assets/aws-prefixes.txt
"""
import ipaddress
import json
import sys

data = json.load(open(sys.argv[1]))
services = {}
for p in data["prefixes"]:
    services.setdefault(p["ip_prefix"], set()).add((p["service"], p["region"]))
rows = []
for prefix, tags in services.items():
    if all(s == "AMAZON" for s, _ in tags) and any(r == "us-east-1" for _, r in tags):
        rows.append(("AMAZON", prefix))
    elif ("S3", "us-east-1") in tags:
        rows.append(("S3", prefix))
    elif ("CLOUDFRONT", "GLOBAL") in tags:
        rows.append(("CLOUDFRONT", prefix))
# Other customers' machines (EC2 and the like) inside a kept prefix stay ordinary
# destinations: they are listed as CUSTOMER, and the longest prefix wins.
kept = [ipaddress.ip_network(r[1]) for r in rows]
for prefix, tags in services.items():
    net = ipaddress.ip_network(prefix)
    if any(s != "AMAZON" for s, _ in tags) and not any(r[1] == prefix for r in rows):
        if any(net != k and net.subnet_of(k) for k in kept):
            rows.append(("CUSTOMER", prefix))
rows.sort(key=lambda r: (r[0], ipaddress.ip_network(r[1])))
print(f"# AWS's published IPv4 ranges, createDate {data['createDate']} (syncToken {data['syncToken']}).")
print("# Source: ip-ranges.json (AWS General Reference, \"AWS IP address ranges\"); written by")
print("# assets/aws-prefixes.py, which says what is kept and why. One line: SERVICE PREFIX.")
for service, prefix in rows:
    print(service, prefix)
