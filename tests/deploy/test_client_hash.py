"""The ingress's hash key, run by a real nginx (Debian's): deploy/nginx/client-hash.conf's maps, evaluated for
requests of every shape a client sends, so each client's requests reach one replica whatever route and key it uses.
(tests/cluster runs the same maps in front of real replicas; deploy/k8s carries the same text.)"""

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.process import free_port

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONFIG = """
{user}
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log;
daemon on;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    access_log off;
    include {maps};
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "$slotserve_client"; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx answering every request with the value it would hash on."""
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed: run 'make nginx'")
    run, port = tmp_path_factory.mktemp("nginx"), free_port()
    conf = run / "nginx.conf"
    conf.write_text(CONFIG.format(user="user root;" if os.geteuid() == 0 else "", run=run, port=port,
                                  maps=ROOT / "deploy" / "nginx" / "client-hash.conf"))
    subprocess.run([NGINX, "-p", str(run), "-c", str(conf)], check=True, capture_output=True, timeout=30)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(url)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url
    subprocess.run([NGINX, "-p", str(run), "-c", str(conf), "-s", "stop"], capture_output=True, timeout=30)


CASES = [  # (method, path, headers, the hash key)
    ("POST", "/v1/clients/alice/predict", {}, "alice"),
    ("PUT", "/v1/clients/alice/model", {"Authorization": "Bearer ssk_admin~secret"}, "alice"),  # an admin acting
    ("GET", "/v1/clients/alice", {"X-Client-Id": "bob"}, "alice"),  # the path names the client; the header is moot
    ("POST", "/v2/models/iris/infer", {"X-Client-Id": "alice"}, "alice"),
    ("POST", "/v1/models/iris:predict", {"X-Client-Id": "alice", "Authorization": "Bearer ssk_admin~s"}, "alice"),
    ("POST", "/v2/models/iris/infer", {"Authorization": "Bearer ssk_alice~AbC-d_9"}, "alice"),  # a tenant's key
    ("POST", "/v1/models/iris:predict", {"Authorization": "bearer   ssk_alice.eu-1~x"}, "alice.eu-1"),
    ("POST", "/v2/models/iris/infer", {"Authorization": "Bearer an-env-admin-key"}, "Bearer an-env-admin-key"),
    ("POST", "/v2/models/iris/infer", {"Authorization": "Bearer ssk_oldstylekey"}, "Bearer ssk_oldstylekey"),
    ("POST", "/v2/models/iris/infer", {}, "default"),  # open mode's "default" client, as on its native path:
    ("POST", "/v1/clients/default/predict", {}, "default"),
]


@pytest.mark.parametrize("method, path, headers, expected", CASES)
def test_every_request_of_a_client_hashes_on_that_client(echo: str, method: str, path: str, headers: dict,
                                                         expected: str) -> None:
    answer = httpx.request(method, echo + path, headers=headers)
    assert answer.status_code == 200 and answer.text == expected
