"""A stand-in for the vLLM server process tree, for supervision tests: it serves /health on the
port given, and leaves a grandchild in its process group as vLLM's EngineCore does.

usage: child_server.py PORT ok|die|hang|stubborn PIDFILE   (stubborn: the grandchild ignores SIGTERM)
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import time

port, mode, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ignore = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if mode == "stubborn" else ""
grandchild = subprocess.Popen([sys.executable, "-c", ignore + "import time; time.sleep(600)"])
with open(pidfile, "w") as f:
    f.write(f"{grandchild.pid}\n")
print("loading weights...", flush=True)
if mode == "die":
    print("RuntimeError: model weights are missing", flush=True)
    sys.exit(3)
if mode == "hang":
    time.sleep(600)


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
