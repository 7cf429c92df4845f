"""Engines found by DNS: ``engine.discover`` names a host whose address records are the engines.

A Kubernetes headless Service is such a name (one record per pod), and so is any DNS name an
operator keeps up to date. :class:`DnsDiscovery` turns the name into endpoint base URLs (the
URL's scheme and port on each address); the supervisor asks it every
``supervisor.discover_every`` seconds and adds or drains endpoints as the answer changes.

Two answers are told apart on purpose: "no such records" (NXDOMAIN, or a name with no
addresses: every pod is gone) is an empty list, and the model is left without endpoints; a
lookup that fails (a timeout, a server error: a DNS outage) is None, and the endpoints there
are stay, so that a blip of the resolver does not take a model down.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

log = logging.getLogger("seekstack.discovery")

LOOKUP_TIMEOUT_S = 2.0


class DnsDiscovery:
    def __init__(self, servers: list[tuple[str, int]] | None = None):
        """``servers``: (address, port) pairs to ask; None or empty: the system's resolver configuration."""
        import dns.asyncresolver

        self.resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            self.resolver.nameservers = [address for address, _ in servers]
            self.resolver.nameserver_ports = {address: port for address, port in servers}
        self.resolver.lifetime = LOOKUP_TIMEOUT_S
        self._failing: set[str] = set()  # names whose last lookup failed (said once in the log)

    async def endpoints(self, url: str) -> list[str] | None:
        """The base URLs ``url``'s host name resolves to now, sorted; [] if it has none, None if the
        lookup failed (keep what there is)."""
        import dns.exception
        import dns.resolver

        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
        try:  # a literal address is itself
            return [_base_url(parts.scheme, str(ipaddress.ip_address(host)), port)]
        except ValueError:
            pass
        addresses: set[str] = set()
        try:
            for record_type in ("A", "AAAA"):
                try:
                    answer = await self.resolver.resolve(host, record_type, search=True)
                except dns.resolver.NoAnswer:
                    continue
                addresses.update(record.to_text() for record in answer)
        except dns.resolver.NXDOMAIN:
            addresses = set()
        except (dns.exception.DNSException, OSError) as exc:
            if host not in self._failing:
                log.warning("engine discovery: looking up %s failed (%s); keeping its endpoints until it answers",
                            host, type(exc).__name__)
                self._failing.add(host)
            return None
        if host in self._failing:
            log.warning("engine discovery: %s answers again", host)
            self._failing.discard(host)
        return sorted(_base_url(parts.scheme, address, port) for address in addresses)


def _base_url(scheme: str, address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}" + (f":{port}" if port else "")
