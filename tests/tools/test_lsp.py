"""`diffc lsp` driven as an editor drives it: JSON-RPC over the server's stdin and stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

try:
    import pygls  # noqa: F401
except ImportError:
    pygls = None

needs_pygls = pytest.mark.skipif(pygls is None, reason="pygls is not installed (pip install '.[lsp]')")


class Client:
    def __init__(self, tmp_path):
        env_cmd = [sys.executable, "-m", "diffc", "lsp"]
        self.proc = subprocess.Popen(env_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path)
        self.next_id = 0

    def send(self, method, params, request=False):
        msg = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            msg["id"] = self.next_id
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return msg.get("id")

    def receive(self):
        length = None
        while True:
            line = self.proc.stdout.readline()
            assert line, "the server closed its output"
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def wait_for(self, pred):
        while True:
            msg = self.receive()
            if pred(msg):
                return msg

    def request(self, method, params):
        k = self.send(method, params, request=True)
        return self.wait_for(lambda m: m.get("id") == k and "method" not in m)

    def diagnostics(self):
        return self.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics")["params"]


@needs_pygls
def test_diagnostics_follow_the_text_and_hover_shows_the_type(tmp_path):
    uri = (tmp_path / "prog.dfl").as_uri()
    c = Client(tmp_path)
    try:
        assert (
            "capabilities"
            in c.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})["result"]
        )
        c.send("initialized", {})
        wrong = "fn sq(x: f64[3]) -> f64 = sum(x * x)\n\nfn main() = sq([1.0, 2.0, 3.0]) + y\n"
        doc = {"uri": uri, "languageId": "dfl", "version": 1, "text": wrong}
        c.send("textDocument/didOpen", {"textDocument": doc})
        got = c.diagnostics()
        assert got["uri"] == uri
        [d] = got["diagnostics"]
        assert d["range"] == {"start": {"line": 2, "character": 34}, "end": {"line": 2, "character": 35}}
        assert "unknown variable `y`" in d["message"] and d["severity"] == 1

        right = wrong.replace(" + y", "")
        c.send(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": right}]},
        )
        assert c.diagnostics()["diagnostics"] == []

        hover = c.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 13}}
        )
        value = hover["result"]["contents"]["value"]
        assert "fn sq(x: f64[3]) -> f64" in value and "specialised: `sq(f64[3]) -> f64`" in value

        # a type error inside a function whose parameters declare their types
        bad = "fn f(x: f64[2]) = x @ x @ x\n"
        c.send(
            "textDocument/didChange", {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": bad}]}
        )
        [d] = c.diagnostics()["diagnostics"]
        assert d["range"]["start"]["line"] == 0 and d["severity"] == 1

        assert c.request("shutdown", None)["result"] is None
        c.send("exit", None)
        assert c.proc.wait(timeout=30) == 0
    finally:
        if c.proc.poll() is None:
            c.proc.kill()
        c.proc.wait()


def test_without_pygls_the_command_says_how_to_install_it():
    code = (
        "import sys\n"
        "sys.modules['pygls'] = sys.modules['pygls.lsp'] = sys.modules['pygls.lsp.server'] = None\n"
        "from diffc.cli import main\n"
        "sys.exit(main(['lsp']))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pip install 'diffc[lsp]'" in r.stderr
