"""A stand-in OpenAI-compatible server for the evaluation's plumbing check: it answers
every chat completion with the rules engine's own evidence from the prompt, so the LLM
path (prompt, HTTP, answer checks, citations) is exercised end to end and must score what
the built-in scores. It says nothing about a model. Usage: fake_openai.py PORT_FILE"""
import http.server
import json
import sys


def answer(prompt):
    start = prompt.index("\n\n") + 2
    end = min(i for i in (prompt.find("\n\nThe alerts as given"), prompt.find("\n\nThe firewall rules")) if i > 0)
    evidence = json.loads(prompt[start:end])
    if "The alerts as given" in prompt:
        return {"findings": [{k: f[k] for k in ("alert_ids", "category", "severity", "why", "action")} for f in evidence]}
    return {"issues": [dict(i, evidence_lines=[]) for i in evidence]}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = json.dumps(answer(body["messages"][-1]["content"]))
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
