"""The tests' network guard for the processes they start (``tracker ...``): put on their
``PYTHONPATH`` by tests/dbsnapshot.base_env, it refuses every connection but loopback and
Unix sockets, as tests/conftest.py does inside the test process."""

import socket

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _allowed(sock, address):
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else str(address)
    return host in ("127.0.0.1", "::1", "localhost") or str(host).startswith("127.")


def _guarded(real):
    def connect(self, address):
        if not _allowed(self, address):
            raise OSError(f"tests may not reach the network (tried {address!r}); use the "
                          "replay server")
        return real(self, address)
    return connect


socket.socket.connect = _guarded(_connect)
socket.socket.connect_ex = _guarded(_connect_ex)
