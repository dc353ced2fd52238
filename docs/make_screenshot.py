"""Regenerate docs/ui.png: the /ui page of a real server with three clients loaded and requests flowing.

    .venv/bin/python docs/make_screenshot.py [OUT.png]

Writes the demo models to a temporary store, serves them (4 slots of 16 MiB on this host's CPU or GPU), loads
alice/medium, bob/mnist and carol/pair, keeps bob and carol predicting, and photographs the page in Debian's
chromium (headless, through Playwright; never `playwright install`).
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLIENTS = {"alice": "medium", "bob": "mnist", "carol": "pair"}
ROWS = {"bob": {"instances": [[0.5] * 784]}, "carol": {"inputs": {"a": [[1.0] * 8], "b": [[1.0] * 4]}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def keep_predicting(url: str, stop: threading.Event) -> None:
    """A light, steady load so the page shows request rates (bob about twice carol's)."""
    with httpx.Client(base_url=url, timeout=10) as http:
        beat = 0
        while not stop.is_set():
            http.post("/v1/clients/bob/predict", json=ROWS["bob"])
            if beat % 2 == 0:
                http.post("/v1/clients/carol/predict", json=ROWS["carol"])
            beat += 1
            time.sleep(0.05)


def main(out: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is needed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        subprocess.run([sys.executable, "-m", "app.cli", "demo-models", str(models)], check=True, cwd=ROOT,
                       capture_output=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SLOTSERVE_SLOTS": "4", "SLOTSERVE_SLOT_MEMORY_MB": "16"}
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--model-dir", str(models), "--state",
                                 str(Path(scratch) / "state.db"), "--port", str(port), "--no-access-log"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()
        try:
            wait_ready(url, proc)
            for client, model in CLIENTS.items():
                httpx.put(f"{url}/v1/clients/{client}/model", json={"model": model}, timeout=60).raise_for_status()
            traffic = threading.Thread(target=keep_predicting, args=(url, stop), daemon=True)
            traffic.start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 760}, color_scheme="light")
                page.goto(f"{url}/ui")
                page.locator('[data-slot="3"]').wait_for()
                page.wait_for_function("() => [...document.querySelectorAll('.rate')]"
                                       ".filter(e => /^[1-9]/.test(e.textContent)).length >= 2", timeout=20000)
                page.select_option("#model", "tiny")
                page.fill("#client", "dave")
                page.locator("#client").blur()
                page.screenshot(path=str(out), full_page=True)
                browser.close()
        finally:
            stop.set()
            proc.terminate()
            proc.wait(timeout=60)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "ui.png")
