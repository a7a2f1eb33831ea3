#!/usr/bin/env python3
"""Writes assets/aws-prefixes.txt from AWS's published ranges (ip-ranges.json).

The detector groups destinations by AWS service and region, and the simulator rotates
service endpoints inside the lab's region's prefixes. Kept, for every region: the
prefixes that AWS lists only as AMAZON (its own service endpoints: SSM, CloudWatch, STS,
...) and S3's; and the global CLOUDFRONT edge. A service's region is kept because a lab
talks to its own region's endpoints: another region's S3 is a different destination. Not kept: EC2 and the like, which are other customers' machines
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
    s3 = sorted(r for s, r in tags if s == "S3")
    if all(s == "AMAZON" for s, _ in tags):
        # An AMAZON-only prefix names one region (checked on 2026-08-22's file).
        rows.append(("AMAZON", sorted(r for _, r in tags)[0], prefix))
    elif s3:
        rows.append(("S3", s3[0], prefix))
    elif ("CLOUDFRONT", "GLOBAL") in tags:
        rows.append(("CLOUDFRONT", "GLOBAL", prefix))
# Other customers' machines (EC2 and the like) inside a kept prefix stay ordinary
# destinations: they are listed as CUSTOMER, and the longest prefix wins.
kept = [ipaddress.ip_network(r[2]) for r in rows]
for prefix, tags in services.items():
    net = ipaddress.ip_network(prefix)
    if any(s != "AMAZON" for s, _ in tags) and not any(r[2] == prefix for r in rows):
        if any(net != k and net.subnet_of(k) for k in kept):
            rows.append(("CUSTOMER", "-", prefix))
rows.sort(key=lambda r: (r[0], r[1], ipaddress.ip_network(r[2])))
print(f"# AWS's published IPv4 ranges, createDate {data['createDate']} (syncToken {data['syncToken']}).")
print("# Source: ip-ranges.json (AWS General Reference, \"AWS IP address ranges\"); written by")
print("# assets/aws-prefixes.py, which says what is kept and why. One line: SERVICE REGION PREFIX.")
for service, region, prefix in rows:
    print(service, region, prefix)
