"""What a wildcard listener advertises, and the data directory lock, in-process."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from p2pchat.addresses import interface_addresses, ws_urls
from p2pchat.lockfile import DataDirectoryInUse, DataDirectoryLock


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
