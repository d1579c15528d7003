"""The real frameworks from examples/: Flask and the Django echo project, with requests
and curl as clients."""
import json
import subprocess

import pytest
import requests

from helpers import EXAMPLES


@pytest.fixture(scope="module")
def flask_srv(apus_module):
    return apus_module("flaskapp:app", "--threads", "2", chdir=EXAMPLES)


@pytest.fixture(scope="module")
def django_srv(apus_module):
    return apus_module("djecho.wsgi", "--processes", "2", "--threads", "2",
                       chdir=EXAMPLES / "djecho")


def test_flask_index(flask_srv):
    r = requests.get(flask_srv.url("/"), timeout=10)
    assert r.status_code == 200 and r.text == "Hello from Flask!\n"


def test_flask_echo_get(flask_srv):
    r = requests.get(flask_srv.url("/echo?a=1&a=2&b=x"), timeout=10)
    j = r.json()
    assert j["method"] == "GET" and j["path"] == "/echo"
    assert j["args"] == {"a": ["1", "2"], "b": ["x"]}
    assert j["remote_addr"] == "127.0.0.1"


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_flask_echo_body(flask_srv, method):
    body = b"k=v&other=" + b"z" * 5000
    r = requests.request(method, flask_srv.url("/echo"), data=body, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    j = r.json()
    assert j["method"] == method and j["body_length"] == len(body)
    assert j["body"].encode("latin-1") == body
    assert j["content_type"] == "application/x-www-form-urlencoded"


def test_flask_chunked_post(flask_srv):
    pieces = [b"alpha-", b"beta-" * 1000, b"gamma"]
    r = requests.post(flask_srv.url("/echo"), data=iter(pieces), timeout=10)  # chunked upload
    assert r.json()["body_length"] == len(b"".join(pieces))


def test_flask_keep_alive_session(flask_srv):
    with requests.Session() as s:
        for i in range(20):
            assert s.get(flask_srv.url(f"/echo?i={i}"), timeout=10).json()["args"] == {"i": [str(i)]}


def test_flask_404(flask_srv):
    assert requests.get(flask_srv.url("/nope"), timeout=10).status_code == 404


def test_django_get(django_srv):
    r = requests.get(django_srv.url("/any/path?x=1&x=2&y=%E2%9C%93"), timeout=10,
                     headers={"X-Test": "hello"})
    assert r.status_code == 200
    j = r.json()
    assert j["method"] == "GET"
    assert j["path"] == "/any/path" and j["path_info"] == "/any/path" and j["script_name"] == ""
    assert j["query"] == {"x": ["1", "2"], "y": ["\u2713"]}
    assert j["headers"]["X-Test"] == "hello"
    assert j["remote_addr"] == "127.0.0.1"
    assert j["server_port"] == str(django_srv.port)
    assert j["scheme"] == "http"
    assert "apus" in j["server_software"].lower()


def test_django_utf8_path(django_srv):
    r = requests.get(django_srv.url("/caf%C3%A9/%E2%9C%93"), timeout=10)
    assert r.json()["path"] == "/caf\xe9/\u2713"


def test_django_post(django_srv):
    body = json.dumps({"k": "v" * 10000}).encode()
    r = requests.post(django_srv.url("/submit"), data=body, timeout=10,
                      headers={"Content-Type": "application/json"})
    j = r.json()
    assert j["method"] == "POST" and j["body_length"] == len(body)
    assert j["content_length"] == str(len(body))


def test_django_chunked_post_body_complete(django_srv):
    pieces = [b"x" * 1000, b"y" * 70000, b"z" * 3]
    r = requests.post(django_srv.url("/chunked"), data=iter(pieces), timeout=10)
    j = r.json()
    assert j["body_length"] == 71003, "request.body of a chunked upload is incomplete"
    assert j["content_length"] == "71003"


def test_django_chunked_post_with_curl(django_srv, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"curl-chunked " * 4000)
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-H", "Transfer-Encoding: chunked",
                          "-H", "Content-Type: application/octet-stream",
                          "--data-binary", f"@{payload}", django_srv.url("/curl")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["body_length"] == len(b"curl-chunked ") * 4000


def test_django_curl_http10_and_head(django_srv):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "--http1.0", "-i",
                          django_srv.url("/old")], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200"
    assert json.loads(body)["path"] == "/old"
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-I", django_srv.url("/head")],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(b" ")[1] == b"200"
    assert out.stdout.endswith(b"\r\n\r\n")


def test_django_under_mount(apus):
    srv = apus("djecho.wsgi", "--mount", "/mnt", chdir=EXAMPLES / "djecho", ready_path="/mnt/")
    j = requests.get(srv.url("/mnt/foo/bar"), timeout=10).json()
    assert j["script_name"] == "/mnt"
    assert j["path_info"] == "/foo/bar"
    assert j["path"] == "/mnt/foo/bar"
