"""Engines found by DNS (registry/discovery.py), asked of a real DNS server on loopback: the
addresses become endpoint URLs; a name with no records means no engines; a lookup that fails
(the server gone) means "keep what there is"."""

from __future__ import annotations

import asyncio

import pytest

from seekstack.config import dns_server
from seekstack.registry.discovery import DnsDiscovery

from dnsserver import DnsServer


@pytest.fixture
def dns():
    server = DnsServer()
    yield server
    server.stop()


def test_a_name_becomes_one_endpoint_per_address_and_none_when_it_has_none(dns):
    discovery = DnsDiscovery([dns_server(dns.address)])
    dns.zone.records["engines.llm.svc.cluster.local"] = ["10.1.0.7", "10.1.0.5", "fd00::9"]
    found = asyncio.run(discovery.endpoints("http://engines.llm.svc.cluster.local:8000"))
    assert found == ["http://10.1.0.5:8000", "http://10.1.0.7:8000", "http://[fd00::9]:8000"]
    assert asyncio.run(discovery.endpoints("https://engines.llm.svc.cluster.local:8443")) == [
        "https://10.1.0.5:8443", "https://10.1.0.7:8443", "https://[fd00::9]:8443"]
    dns.zone.records["engines.llm.svc.cluster.local"] = []  # every pod gone: no addresses
    assert asyncio.run(discovery.endpoints("http://engines.llm.svc.cluster.local:8000")) == []
    assert asyncio.run(discovery.endpoints("http://nothing.llm.svc.cluster.local:8000")) == []  # NXDOMAIN
    assert asyncio.run(discovery.endpoints("http://10.2.0.1:8000")) == ["http://10.2.0.1:8000"]  # no lookup


def test_a_failed_lookup_keeps_what_there_is_and_is_said_once(dns, caplog):
    discovery = DnsDiscovery([dns_server(dns.address)])
    dns.zone.records["engines.test"] = ["10.1.0.5"]
    assert asyncio.run(discovery.endpoints("http://engines.test:8000")) == ["http://10.1.0.5:8000"]
    dns.stop()  # the resolver is down (or cut off)
    assert asyncio.run(discovery.endpoints("http://engines.test:8000")) is None
    assert asyncio.run(discovery.endpoints("http://engines.test:8000")) is None
    warnings = [r.getMessage() for r in caplog.records if "engine discovery" in r.getMessage()]
    assert warnings == ["engine discovery: looking up engines.test failed (LifetimeTimeout); keeping its endpoints "
                        "until it answers"]


def test_dns_servers_are_addresses_with_an_optional_port():
    assert dns_server("10.96.0.10") == ("10.96.0.10", 53)
    assert dns_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dns_server("[fd00::a]:53") == ("fd00::a", 53) and dns_server("fd00::a") == ("fd00::a", 53)
    assert dns_server("kube-dns.kube-system") is None and dns_server("10.0.0.1:99999") is None
