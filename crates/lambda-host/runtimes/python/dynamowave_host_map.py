"""Imported at start-up by every Python function the local Lambda host runs (a `.pth` file in
the venv's site-packages imports it; a `sitecustomize.py` there would be shadowed by the one some
distributions put in the standard library's directory): sends connections for mapped host names to the local gateway, so that
code building AWS's URLs (`https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`) reaches
it without editing /etc/hosts.

`DYNAMOWAVE_HOST_MAP` is `PATTERN=ADDRESS:PORT[,PATTERN=ADDRESS:PORT...]`; a pattern is a host
name or `*.` and a suffix, the star standing for exactly one label (as in a certificate). Only
port 443 is moved. The hook is `socket.getaddrinfo`, which `http.client`, urllib3 (botocore's
HTTP client) and asyncio resolve through; the TLS layer still gets the original name as
`server_hostname`, so SNI and the certificate check use it.
"""

import os
import socket


def _parse(text):
    rules = []
    for entry in (text or "").split(","):
        pattern, eq, target = entry.partition("=")
        address, colon, port = target.rpartition(":")
        if not (pattern and eq and address and colon and port.isdigit()):
            continue
        port = int(port)
        if 0 < port < 65536:
            rules.append((pattern.lower(), address.strip("[]"), port))
    return rules


def _matches(pattern, host):
    if pattern.startswith("*."):
        suffix = pattern[1:]
        label = host[: -len(suffix)] if host.endswith(suffix) else ""
        return bool(label) and "." not in label
    return host == pattern


_RULES = _parse(os.environ.get("DYNAMOWAVE_HOST_MAP"))

if _RULES:
    _getaddrinfo = socket.getaddrinfo

    def _mapped_getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, bytes):
            name = host.decode("ascii", "replace")
        else:
            name = host
        if isinstance(name, str) and str(port) in ("443", "https"):
            name = name.lower().rstrip(".")
            for pattern, address, mapped in _RULES:
                if _matches(pattern, name):
                    return _getaddrinfo(address, mapped, *args, **kwargs)
        return _getaddrinfo(host, port, *args, **kwargs)

    socket.getaddrinfo = _mapped_getaddrinfo
