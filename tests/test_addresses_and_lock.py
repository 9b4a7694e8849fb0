"""What a wildcard listener advertises, and the data directory lock, in-process."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from p2pchat.addresses import interface_addresses, ws_urls
from p2pchat.lockfile import DataDirectoryInUse, DataDirectoryLock
from p2pchat.peer import open_peer


def test_a_specific_address_is_advertised_as_it_is() -> None:
    assert ws_urls("127.0.0.1", 9001) == ["ws://127.0.0.1:9001"]
    assert ws_urls("::1", 9001) == ["ws://[::1]:9001"]


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_a_wildcard_is_replaced_by_this_machines_addresses(wildcard: str) -> None:
    urls = ws_urls(wildcard, 9100)
    assert urls
    hosts = [urlsplit(url).hostname or "" for url in urls]
    for url, host in zip(urls, hosts, strict=True):
        address = ipaddress.ip_address(host)
        assert not address.is_unspecified and not address.is_link_local
        assert address.version == (6 if wildcard == "::" else 4)
        assert urlsplit(url).port == 9100, url
    # Addresses others can use come first; loopback, if listed, last.
    loopback = [ipaddress.ip_address(h).is_loopback for h in hosts]
    assert loopback == sorted(loopback)


def test_interface_addresses_include_loopback() -> None:
    assert "127.0.0.1" in interface_addresses()


def test_the_lock_is_exclusive_names_the_holder_and_is_released(tmp_path: Path) -> None:
    data = tmp_path / "new" / "dir"
    with DataDirectoryLock(data):
        assert data.is_dir()  # created on the way
        with pytest.raises(DataDirectoryInUse) as caught:
            DataDirectoryLock(data).acquire()
        assert caught.value.pid == os.getpid()
        assert f"in use by process {os.getpid()}" in str(caught.value)
    with DataDirectoryLock(data):  # free again
        pass


async def test_a_restarted_peer_listens_where_it_did_before_if_it_can(tmp_path: Path) -> None:
    # Its neighbours kept that address: back there, it is found again (say, to reopen a
    # room every member quit). Taken by someone else meanwhile: any other port will do.
    with trio.fail_after(20):
        async with open_peer("alice", data_dir=tmp_path) as alice:
            first = alice.url
        async with open_peer("alice", data_dir=tmp_path) as alice:
            assert alice.url == first
        port = urlsplit(first).port
        assert port is not None
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            async with open_peer("alice", data_dir=tmp_path) as alice:
                assert alice.url is not None and urlsplit(alice.url).port not in (port, None)
        async with open_peer("alice", data_dir=tmp_path) as alice:
            assert alice.url != first  # (the port it had last, now)
        async with open_peer("alice", data_dir=tmp_path, listen=f"127.0.0.1:{port}") as alice:
            assert alice.url == first  # (a port given is taken as it is)
