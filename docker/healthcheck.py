"""The image's HEALTHCHECK: exit 0 when the server in this container answers GET /healthz with 200, else 1.

Python's own urllib, so the image needs no curl. It asks the address the server binds (``SLOTSERVE_HOST``, a
wildcard meaning loopback) on ``SLOTSERVE_PORT``; /healthz needs no key, whatever the authentication mode.
"""

import os
import sys
import urllib.request

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def main() -> int:
    host = os.environ.get("SLOTSERVE_HOST", "127.0.0.1").strip()
    host = WILDCARDS.get(host, host)
    port = os.environ.get("SLOTSERVE_PORT", "8000").strip() or "8000"
    url = f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError, HTTPError, timeouts and refused connections are all OSErrors
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
