"""A TCP proxy that can turn into a black hole.

Between the daemon and a server it forwards bytes both ways until
blackhole() is called. From then on it stops forwarding on every existing
connection without closing anything, as a dead network path or a frozen
host would: no FIN, no RST, the peer's writes just vanish. Connections
accepted while dark are held open and never forwarded. heal() lets new
connections through again; the old ones stay dark for good, so only a
reconnect recovers, which is what the daemon must notice and do.
"""

import selectors
import socket
import threading


class Proxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.peers = {}          # socket -> its partner
        self.held = []           # sockets we no longer read from
        self.dark = False
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def blackhole(self):
        with self.lock:
            self.dark = True
            for s in list(self.peers):
                self._hold(s)

    def heal(self):
        with self.lock:
            self.dark = False

    def close(self):
        self.stopping = True
        self.thread.join(5)
        for s in list(self.peers) + self.held + [self.lsock]:
            try:
                s.close()
            except OSError:
                pass

    def _hold(self, s):
        try:
            self.sel.unregister(s)
        except (KeyError, ValueError):
            pass
        self.peers.pop(s, None)
        self.held.append(s)

    def _drop(self, s):
        for x in (s, self.peers.get(s)):
            if x is None:
                continue
            try:
                self.sel.unregister(x)
            except (KeyError, ValueError):
                pass
            self.peers.pop(x, None)
            x.close()

    def _accept(self):
        client, _ = self.lsock.accept()
        if self.dark:
            self.held.append(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, None)
        self.peers[client] = upstream
        self.peers[upstream] = client

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(timeout=0.1):
                with self.lock:
                    s = key.fileobj
                    if s is self.lsock:
                        self._accept()
                        continue
                    if s not in self.peers:
                        continue
                    try:
                        data = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(s)
                        continue
                    try:
                        self.peers[s].sendall(data)
                    except BlockingIOError:
                        # Test traffic is small; a full peer buffer means
                        # a stuck peer, and dropping is as good as any.
                        self._drop(s)
                    except OSError:
                        self._drop(s)
