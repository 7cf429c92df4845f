"""A DNS server of a test's own (dnslib's, on a loopback UDP and TCP port): a zone of names whose
address records the test changes while a gateway looks them up — as a Kubernetes headless
Service's records change when pods come and go."""

from __future__ import annotations

from dnslib import AAAA, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from conftest import free_port


class Zone(BaseResolver):
    def __init__(self):
        self.records: dict[str, list[str]] = {}  # name → its addresses; a name not here: NXDOMAIN

    def resolve(self, request, handler):
        reply = request.reply()
        name, qtype = str(request.q.qname).rstrip("."), QTYPE[request.q.qtype]
        if name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for address in self.records[name]:
            if qtype == "AAAA" and ":" in address:
                reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=1))
            elif qtype == "A" and ":" not in address:
                reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=1))
        return reply


class DnsServer:
    def __init__(self):
        self.zone = Zone()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._servers: list[DNSServer] = []
        self.start()

    def start(self) -> None:
        """Answer on the port (again, after :meth:`stop`: a resolver back from an outage)."""
        self._servers = [DNSServer(self.zone, port=self.port, address="127.0.0.1", tcp=tcp,
                                   logger=DNSLogger("-request,-reply,-truncated,-error", prefix=False))
                         for tcp in (False, True)]
        for server in self._servers:
            server.start_thread()

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []
