"""The labelled root-cause cases: a log, the rules in force, and the rule that let the
offender in (None: no rule explains it, or there is nothing to find). Written before the
analysers were run on them."""

T = "| Timestamp | Source IP | Destination IP | Protocol | Action | Reason | User |\n|---|---|---|---|---|---|---|\n"

CASES = [
    # 1. The textbook case: no port column, Reason names the scan, a wide-open allow.
    dict(
        name="portless-scan-then-allow",
        logs=("md", T + "| 10:00:01 | 10.0.2.15 | 10.0.1.10 | TCP | Allowed | Established Connection | alice |\n"
              "| 10:01:10 | 203.0.113.45 | 10.0.1.10 | TCP | Denied | Suspicious Port Scan | N/A |\n"
              "| 10:01:12 | 203.0.113.45 | 10.0.1.10 | TCP | Denied | Port scan detected | N/A |\n"
              "| 10:01:30 | 203.0.113.45 | 10.0.1.10 | TCP | Allowed | Data Transfer | N/A |\n"
              "| 10:01:35 | 203.0.113.45 | 10.0.1.10 | TCP | Allowed | Suspicious Payload | N/A |\n"),
        rules=("md", "| Rule ID | Source IP | Destination IP | Protocol | Port Range | Action |\n|---|---|---|---|---|---|\n"
               "| 100 | 10.0.2.0/24 | 10.0.1.10 | TCP | 443 | Allow |\n| 200 | Any | 10.0.1.10 | TCP | 22 | Deny |\n"
               "| 300 | Any | Any | Any | 1-65535 | Allow |\n"),
        rule="300", category="active-attack"),
    # 2. Ports in the log; deny rules for some ports, an allow-all after them.
    dict(
        name="denied-ports-then-allow-all",
        logs=("csv", "time,src,dst,dst_port,proto,action\n"
              "09:00,10.1.0.20,10.1.1.10,443,tcp,ALLOW\n09:01,203.0.113.66,10.1.1.10,22,tcp,DENY\n"
              "09:01,203.0.113.66,10.1.1.10,23,tcp,DENY\n09:01,203.0.113.66,10.1.1.10,3389,tcp,DENY\n"
              "09:02,203.0.113.66,10.1.1.10,8081,tcp,ALLOW\n"),
        rules=("csv", "id,priority,direction,action,source,destination,ports,protocol\n"
               "deny-ssh,100,inbound,deny,0.0.0.0/0,10.1.1.10,22,tcp\ndeny-rdp,110,inbound,deny,0.0.0.0/0,10.1.1.10,3389,tcp\n"
               "deny-telnet,120,inbound,deny,0.0.0.0/0,10.1.1.10,23,tcp\nallow-all,500,inbound,allow,0.0.0.0/0,10.1.1.10,any,any\n"),
        rule="allow-all", category="active-attack"),
    # 3. The offender got in through a port range open to all, not a wide-open rule.
    dict(
        name="open-port-range",
        logs=("csv", "Timestamp,Src IP,Dst IP,Dst Port,Protocol,Result\n"
              "10:00,203.0.113.8,10.0.1.10,22,TCP,Blocked\n10:00,203.0.113.8,10.0.1.10,25,TCP,Blocked\n"
              "10:00,203.0.113.8,10.0.1.10,110,TCP,Blocked\n10:01,203.0.113.8,10.0.1.10,8080,TCP,Permitted\n"),
        rules=("csv", "Rule ID,Source IP,Destination IP,Dst Port,Protocol,Decision\n"
               "r10,10.0.2.0/24,10.0.1.10,443,tcp,Allow\nr20,Any,10.0.1.10,22,tcp,Deny\nr30,Any,10.0.1.10,8000-9000,tcp,Allow\n"),
        rule="r30", category="active-attack"),
    # 4. VPC Flow Logs (default format): REJECTs on several ports, then an ACCEPT on 3306.
    dict(
        name="flow-logs-mysql",
        logs=("log", "".join(
            f"2 123456789012 eni-0a1b 198.51.100.23 10.0.1.10 4{i}000 {p} 6 1 40 1700000{i}00 1700000{i}59 {a} OK\n"
            for i, (p, a) in enumerate([(22, "REJECT"), (23, "REJECT"), (3389, "REJECT"), (5432, "REJECT"), (3306, "ACCEPT")]))),
        rules=("csv", "id,action,source,destination,ports,protocol\n"
               "web,allow,0.0.0.0/0,10.0.1.10,443,tcp\nmysql-anywhere,allow,0.0.0.0/0,10.0.1.10,3306,tcp\n"),
        rule="mysql-anywhere", category="active-attack"),
    # 5. Nothing denied: nothing to find.
    dict(
        name="all-allowed",
        logs=("csv", "time,source,destination,port,protocol,action\n"
              "09:00,10.1.0.20,10.1.1.10,443,tcp,allow\n09:01,10.1.0.21,10.1.1.10,443,tcp,allow\n09:02,10.1.0.30,10.1.1.10,22,tcp,allow\n"),
        rules=("csv", "id,action,source,destination,ports,protocol\nweb,allow,10.1.0.0/24,10.1.1.10,443,tcp\nssh,allow,10.1.0.0/24,10.1.1.10,22,tcp\n"),
        rule=None, category=None),
    # 6. One deny, then the public web port: no scan, a check.
    dict(
        name="one-deny-then-web",
        logs=("csv", "time,source,destination,port,protocol,action\n"
              "09:00,198.51.100.4,10.1.1.10,22,tcp,deny\n09:01,198.51.100.4,10.1.1.10,443,tcp,allow\n"),
        rules=("csv", "id,action,source,destination,ports,protocol\nno-ssh,deny,any,10.1.1.10,22,tcp\nweb,allow,any,10.1.1.10,443,tcp\n"),
        rule="web", category="hygiene"),
    # 7. The log names the rule that matched.
    dict(
        name="rule-named-in-log",
        logs=("md", "| time | source | destination | port | action | rule | message |\n|---|---|---|---|---|---|---|\n"
              "| 1 | 203.0.113.90 | 10.1.1.10 | 22 | deny | 10 | probe |\n| 2 | 203.0.113.90 | 10.1.1.10 | 5900 | allow | 40 | |\n"),
        rules=("md", "| id | action | source | destination | ports | protocol |\n|---|---|---|---|---|---|\n"
               "| 10 | deny | any | any | 22 | tcp |\n| 40 | allow | 203.0.113.0/24 | any | 5900-5910 | tcp |\n| 50 | allow | any | any | any | any |\n"),
        rule="40", category="active-attack"),
    # 8. Priorities decide, not the order of the table.
    dict(
        name="priority-order",
        logs=("csv", "time,source,destination,port,protocol,action,message\n"
              "1,203.0.113.5,10.1.1.10,21,tcp,deny,port scan\n2,203.0.113.5,10.1.1.10,2222,tcp,allow,\n"),
        rules=("csv", "id,priority,action,source,destination,ports,protocol\n"
               "catch-all,900,allow,any,any,any,any\nalt-ssh,50,allow,203.0.113.0/28,10.1.1.10,2222,tcp\nno-ftp,10,deny,any,any,21,tcp\n"),
        rule="alt-ssh", category="active-attack"),
    # 9. Protocol numbers and port lists.
    dict(
        name="protocol-numbers-port-lists",
        logs=("csv", "time,source,destination,port,protocol,action\n"
              "1,192.0.2.44,10.1.1.10,22,6,deny\n2,192.0.2.44,10.1.1.10,3389,6,deny\n3,192.0.2.44,10.1.1.10,5432,6,deny\n"
              "4,192.0.2.44,10.1.1.10,8443,6,allow\n"),
        rules=("csv", "id,action,source,destination,ports,protocol\nweb-ports,allow,0.0.0.0/0,10.1.1.10,\"80,443,8443\",6\n"),
        rule="web-ports", category="active-attack"),
    # 10. Flagged by a probe reason but allowed, then allowed again.
    dict(
        name="flagged-and-allowed",
        logs=("md", T + "| 11:00 | 198.51.100.50 | 10.0.1.10 | TCP | Allowed | Probe detected | N/A |\n"
              "| 11:02 | 198.51.100.50 | 10.0.1.10 | TCP | Allowed | Data Transfer | N/A |\n"),
        rules=("md", "| Rule ID | Source IP | Destination IP | Protocol | Port Range | Action |\n|---|---|---|---|---|---|\n"
               "| 10 | 198.51.100.0/24 | 10.0.1.10 | TCP | 1-65535 | Allow |\n| 99 | Any | Any | Any | Any | Deny |\n"),
        rule="10", category="active-attack"),
    # 11. The rules given deny what the log saw allowed: nothing in them to blame.
    dict(
        name="rules-do-not-explain",
        logs=("csv", "time,source,destination,port,protocol,action,message\n"
              "1,203.0.113.3,10.1.1.10,22,tcp,deny,scan\n2,203.0.113.3,10.1.1.10,23,tcp,deny,scan\n3,203.0.113.3,10.1.1.10,80,tcp,allow,\n"),
        rules=("csv", "id,action,source,destination,ports,protocol\ninternal,allow,10.0.0.0/8,any,any,any\n"),
        rule=None, category="active-attack"),
]
