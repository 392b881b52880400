"""One HTTPS request with Python's ssl module, for tests/it/tls.rs.

    tls_client.py URL CAFILE [BODY]

Verifies the server against CAFILE (and the host name or IP address of URL), sends GET, or
POST with BODY as JSON, and prints one JSON line: the status, the body, the SHA-256 of the
certificate the server presented, the TLS version and the ALPN protocol agreed.
"""

import hashlib
import http.client
import json
import ssl
import sys
import urllib.parse


def main() -> None:
    url, cafile = sys.argv[1], sys.argv[2]
    body = sys.argv[3] if len(sys.argv) > 3 else None
    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=cafile)
    # http.client speaks HTTP/1.1 only, so it offers only that (the listener also offers h2).
    context.set_alpn_protocols(["http/1.1"])
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)
    connection.connect()
    peer = connection.sock.getpeercert(binary_form=True)
    headers = {"content-type": "application/json"} if body is not None else {}
    connection.request("POST" if body is not None else "GET", parts.path, body=body, headers=headers)
    response = connection.getresponse()
    print(
        json.dumps(
            {
                "status": response.status,
                "body": response.read().decode("utf-8", "replace"),
                "certificate_sha256": hashlib.sha256(peer).hexdigest(),
                "tls_version": connection.sock.version(),
                "alpn": connection.sock.selected_alpn_protocol(),
            }
        )
    )


if __name__ == "__main__":
    main()
